"""JSON as RFC 8259 defines it, and nothing Python's parser lets through besides:
``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (a partner's parser refuses
them: Node's ``JSON.parse`` does), a number too large for a double (``1e400``)
becomes infinity, and an object that names a key twice is read differently by
different parsers (Python keeps the last, others the first, some refuse it), so
what outboxd checked would not be what a partner reads. Every JSON that comes
from outside (a request body, a payload to be sent as JSON, a partner's callback,
a line of ``outboxd enqueue --batch``) is read here. The standard library only."""

from __future__ import annotations

import json
import math
from typing import Any


class NotJson(ValueError):
    """The text is not JSON (or not JSON every parser reads alike); the text says
    why, ``path`` where when it is a value or a key that is at fault
    (``messages[1].payload.v``)."""

    def __init__(self, text: str, path: str | None = None) -> None:
        super().__init__(text)
        self.path = path


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON number")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson(f"the number {text[:40]} is too large (beyond a 64-bit float)")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NotJson(f"the key {key[:60]!r} is given twice in one object")
        out[key] = value
    return out


def loads(text: str | bytes | bytearray) -> Any:
    """The JSON document ``text`` holds; ``NotJson`` saying why when it holds none:
    not JSON at all, ``NaN`` or ``Infinity``, a number beyond a double, a key
    repeated in an object, or nesting too deep to read."""
    try:
        return json.loads(
            text, parse_constant=_constant, parse_float=_number, object_pairs_hook=_object
        )
    except NotJson as exc:
        raise NotJson(str(exc), _where(text)) from None
    except RecursionError:
        raise NotJson("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer too long
        raise NotJson(str(exc)) from None


class _Pairs(list[tuple[str, Any]]):
    """An object as read, its keys in order, repeats included."""


class _Bad:
    """A number JSON does not have, as read."""


def _lenient_number(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Bad()


def _where(text: str | bytes | bytearray) -> str | None:
    """The path of the first value or key ``loads`` refused (read again without
    refusing), as a request names a field: ``a.b[2].c``; None for the document
    itself or when it cannot be found."""
    try:
        document = json.loads(
            text, parse_constant=lambda _: _Bad(), parse_float=_lenient_number,
            object_pairs_hook=_Pairs,
        )  # fmt: skip
        return _find(document, "")
    except (ValueError, RecursionError):
        return None


def _find(node: Any, path: str) -> str | None:
    if isinstance(node, _Bad):
        return path or None
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            here = f"{path}.{key}" if path else key
            if key in seen:
                return here
            seen.add(key)
            found = _find(value, here)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _find(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None
