"""JSON pointers (RFC 6901): ``/a/0/b`` names a value inside a JSON document;
in a token ``~1`` is ``/`` and ``~0`` is ``~``. Pure: no I/O, and no pydantic (the
store reads answers with it; the settings' field type is ``daemon.domain.fields``'s
``JsonPointer``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ESCAPE = re.compile(r"~(?![01])")
MAX_POINTER = 500  # characters a pointer in the settings may have


def check_pointer(text: str) -> str:
    """``text`` when it is a JSON pointer to something inside a document (it
    starts with ``/``; every ``~`` is ``~0`` or ``~1``); ``ValueError`` naming
    what is wrong otherwise."""
    if not text.startswith("/"):
        raise ValueError(
            f"not a JSON pointer: {text!r} (RFC 6901: it starts with /, as in /data/id)"
        )
    if _ESCAPE.search(text):
        raise ValueError(
            f"not a JSON pointer: {text!r} (RFC 6901: ~ is written ~0 and / in a name ~1)"
        )
    if not text.isprintable():
        raise ValueError(f"not a JSON pointer: {text!r} (control characters)")
    return text


def tokens(path: str) -> list[str]:
    """The reference tokens of a pointer, unescaped (``/a~1b/0`` → ``["a/b", "0"]``)."""
    if path == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def resolve(document: Any, path: str) -> Any:
    """The value at ``path`` in ``document`` (``""`` is the whole document);
    None where the document has nothing there."""
    node = document
    for token in tokens(path):
        if isinstance(node, Mapping):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
        if node is None:
            return None
    return node


def scalar_text(value: Any) -> str | None:
    """A key, an id or a status as text: a string as it is, a whole number in
    digits; None for anything else (a mapping, a list, a boolean, null, a
    fraction), which cannot name a message or a status."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
