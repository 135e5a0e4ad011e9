"""``${VAR}`` substitution inside the string values of a parsed YAML document.

Forms: ``${VAR}`` (must be set), ``${VAR:-default}`` (default when unset or
empty), ``${VAR:?message}`` (error with the message when unset or empty) and
``$$`` for a literal ``$``. Substitution happens after YAML parsing, on string
scalars only, so an environment value can never change the document's shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A ``${...}`` reference that cannot be resolved; the text says which."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Resolve every reference in ``text`` against ``environ``."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < length else ""
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt != "{":
            out.append("$")
            i += 1
            continue
        close = text.find("}", i + 2)
        if close < 0:
            raise InterpolationError(f"unclosed '${{' at offset {i} (write $$ for a literal $)")
        out.append(_resolve(text[i + 2 : close], environ))
        i = close + 1
    return "".join(out)


def names_variable(text: str) -> bool:
    """Whether ``text`` holds a ``${...}`` reference (``$$`` is a literal ``$``)."""
    i = text.find("$")
    while 0 <= i < len(text) - 1:
        if text[i + 1] == "{":
            return True
        i = text.find("$", i + (2 if text[i + 1] == "$" else 1))
    return False


def _resolve(body: str, environ: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    if not match:
        raise InterpolationError(f"invalid variable reference '${{{body}}}'")
    name = match.group(0)
    rest = body[match.end() :]
    value = environ.get(name)
    if rest == "":
        if value is None:
            raise InterpolationError(
                f"environment variable {name} is not set "
                f"(use ${{{name}:-default}} to allow a default)"
            )
        return value
    if rest.startswith(":-"):
        return value if value else rest[2:]
    if rest.startswith(":?"):
        if value:
            return value
        message = rest[2:] or "must be set"
        raise InterpolationError(f"environment variable {name}: {message}")
    raise InterpolationError(
        f"invalid variable reference '${{{body}}}': expected ${{{name}}}, "
        f"${{{name}:-default}} or ${{{name}:?message}}"
    )
