"""References from a message to what its prerequisite's peer answered, filled in
when the message is sent. Pure: no I/O.

A message enqueued with ``after`` (a prerequisite) may write, inside the string
values of its JSON payload (or in a FHIR search's query text):

| reference            | is replaced by                                               |
|----------------------|--------------------------------------------------------------|
| ``{{after.id}}``     | the ``id`` in the prerequisite's stored response (the id a  |
|                      | FHIR server gave the resource; a search's one match's id)   |
| ``{{after/POINTER}}``| the value at that JSON pointer (RFC 6901) in the stored     |
|                      | response: ``{{after/subject/reference}}``,                  |
|                      | ``{{after/entry/0/response/location}}``                     |

The value must be a string or a whole number; it is put in as text (in a JSON
string, escaped as JSON; in a query, percent-encoded). A prerequisite whose
response has no such value makes the message fail with that reason: the answer
will not change by waiting. A message with a reference and no ``after`` is
refused at enqueue. ``{{`` not followed by ``after`` is left as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from daemon.domain.jsonpointer import check_pointer, resolve, scalar_text
from daemon.domain.messages import PREREQUISITE_MARK

MARKER = PREREQUISITE_MARK  # a payload without it has no reference (a fast first look)
_REFERENCE = re.compile(r"\{\{after(\.id|/[^{}]*)\}\}")
_ANY = re.compile(r"\{\{\s*after\b[^}]*\}*")  # something that looks meant as a reference
PLACEHOLDER = "0"  # what a reference stands as while a payload is checked at enqueue


class UnresolvedReference(ValueError):
    """A reference that cannot be filled from the prerequisite's response."""


class BadReference(ValueError):
    """A reference written wrongly (at enqueue); the text says which and how."""


def mentions(payload: bytes) -> bool:
    """Whether a payload may hold a reference (a cheap test: no parsing)."""
    return MARKER in payload


def names_prerequisite(payload: bytes) -> bool:
    """Whether a payload holds a reference (written rightly) to its prerequisite."""
    return mentions(payload) and _REFERENCE.search(payload.decode("utf-8", "replace")) is not None


def pointer_of(match: re.Match[str]) -> str:
    """The JSON pointer a matched reference names (``{{after.id}}``: ``/id``)."""
    tail = match.group(1)
    return "/id" if tail == ".id" else tail


def check_text(text: str) -> list[str]:
    """The pointers of the references in ``text``; ``BadReference`` for one
    written wrongly (``{{after.name}}``, ``{{ after.id }}``, a bad pointer)."""
    found = []
    for near in _ANY.finditer(text):
        match = _REFERENCE.fullmatch(near.group(0))
        if match is None:
            raise BadReference(
                f"{near.group(0)!r} is not a reference: write {{{{after.id}}}} or "
                "{{after/POINTER}} (a JSON pointer into the prerequisite's response)"
            )
        pointer = pointer_of(match)
        try:
            check_pointer(pointer)
        except ValueError as exc:
            raise BadReference(f"{match.group(0)!r}: {exc}") from None
        found.append(pointer)
    return found


def strings(document: Any) -> list[str]:
    """Every string value (and key) of a JSON document."""
    out: list[str] = []
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            out += [k for k in node if isinstance(k, str)]
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    return out


def check_document(document: Any) -> list[str]:
    """The pointers of every reference in a JSON document's strings."""
    return [p for text in strings(document) if "{{" in text for p in check_text(text)]


def placeheld(document: Any) -> Any:
    """The document with every reference replaced by ``PLACEHOLDER`` (to check the
    rest of it as it will be sent)."""
    return _map(document, lambda text: _REFERENCE.sub(PLACEHOLDER, text))


def _map(node: Any, change: Callable[[str], str]) -> Any:
    if isinstance(node, str):
        return change(node) if "{{" in node else node
    if isinstance(node, dict):
        return {k: _map(v, change) for k, v in node.items()}
    if isinstance(node, list):
        return [_map(v, change) for v in node]
    return node


def _answer(response: str | None) -> Any:
    if response is None or not response.strip():
        raise UnresolvedReference("its prerequisite's peer kept no response to refer to")
    try:
        return json.loads(response)
    except (ValueError, RecursionError):
        raise UnresolvedReference("its prerequisite's response is not JSON") from None


def _filler(response: str | None, encode: Callable[[str], str]) -> Callable[[str], str]:
    answer = _answer(response)

    def one(match: re.Match[str]) -> str:
        pointer = pointer_of(match)
        value = scalar_text(resolve(answer, pointer))
        if value is None:
            raise UnresolvedReference(
                f"its prerequisite's response has no text or number at {pointer}"
                f" (for {match.group(0)})"
            )
        return encode(value)

    return lambda text: _REFERENCE.sub(one, text)


def fill_json(payload: bytes, response: str | None) -> bytes:
    """The JSON payload with its references filled from the prerequisite's stored
    ``response``; ``UnresolvedReference`` when one cannot be. A payload without
    references is returned as it is, byte for byte."""
    if not mentions(payload):
        return payload
    document = json.loads(payload)
    if not check_document(document):
        return payload
    filled = _map(document, _filler(response, lambda value: value))
    return json.dumps(filled, ensure_ascii=False, separators=(",", ":")).encode()


def fill_text(text: str, response: str | None) -> str:
    """A query's references filled, each value percent-encoded."""
    if "{{after" not in text or not check_text(text):
        return text
    return _filler(response, lambda value: quote(value, safe=""))(text)
