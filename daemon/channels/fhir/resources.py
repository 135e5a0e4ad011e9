"""A FHIR message checked at enqueue: a resource or a Bundle validated against the
FHIR R4 models of ``fhir.resources`` (its ``R4B`` package: FHIR 4.3, which the
resources a SIMRS sends — Patient, Encounter, Condition, Observation, Bundle —
share with 4.0.1 unchanged), a search's query read. What is wrong is told with the
path of the bad element (``Encounter.period.start: …``), up to five of them.

``fhir.resources`` is imported on the first check (a third of a second), never by
the channel's declaration: reading the YAML file does not load it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from daemon.channels.fhir.rules import CONDITIONAL_CREATE, KINDS, SEARCH, UPDATE, identifier_query
from daemon.channels.kind import InvalidPayload
from daemon.channels.references import BadReference, check_document, check_text, placeheld
from daemon.domain import jsontext

ERRORS_SHOWN = 5
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PYTHON_NAMES = {"resource_type": "resourceType", "class_fhir": "class"}


def check(payload: bytes, kind: str) -> bytes:
    """What to store for a message of ``kind``, or ``InvalidPayload`` saying why not."""
    if kind not in KINDS:
        raise InvalidPayload(f"unknown fhir message kind {kind!r}: {', '.join(KINDS)}")
    if kind == SEARCH:
        return _check_search(payload)
    try:
        document = jsontext.loads(payload)
    except jsontext.NotJson as exc:
        raise InvalidPayload(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidPayload("a FHIR resource is a JSON object with a resourceType")
    try:
        check_document(document)
    except BadReference as exc:
        raise InvalidPayload(str(exc)) from None
    resource = placeheld(document)
    name = resource.get("resourceType")
    if not isinstance(name, str) or not _TYPE.fullmatch(name) or not is_resource(name):
        raise InvalidPayload(f"resourceType: {name!r} is not a FHIR R4 resource type")
    problems = _problems(name, resource)
    if problems:
        raise InvalidPayload(f"not a valid FHIR {name}: {problems}")
    if kind == UPDATE and not (isinstance(resource.get("id"), str) and resource["id"]):
        raise InvalidPayload(f"{name}.id: an update names the resource's id")
    if kind == CONDITIONAL_CREATE and identifier_query(resource) is None:
        raise InvalidPayload(
            f"{name}.identifier: a conditional create needs an identifier with a system and "
            "a value (If-None-Exist: identifier=system|value)"
        )
    return payload


def _check_search(payload: bytes) -> bytes:
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidPayload("a search is UTF-8 text such as Patient?identifier=…") from None
    try:
        check_text(text)
    except BadReference as exc:
        raise InvalidPayload(str(exc)) from None
    name, sep, query = text.partition("?")
    if not sep or not query or not _TYPE.fullmatch(name) or not is_resource(name):
        raise InvalidPayload(
            f"a search is [type]?[parameters], such as Patient?identifier=system|value; "
            f"got {text[:100]!r}"
        )
    if any(c.isspace() or not c.isprintable() for c in text) or "#" in text:
        raise InvalidPayload("a search has no spaces, control characters or '#'")
    try:
        parse_qsl(query, strict_parsing=True)
    except ValueError as exc:
        raise InvalidPayload(f"the search's parameters do not read: {exc}") from None
    return text.encode()


@cache
def is_resource(name: str) -> bool:
    """Whether ``name`` is a FHIR resource type (not a data type such as Identifier)."""
    if not _TYPE.fullmatch(name):
        return False
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.resource import Resource

    try:
        return issubclass(get_fhir_model_class(name), Resource)
    except (ValueError, LookupError):
        return False


def problems(name: str, resource: dict[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with a resource of type ``name``: (element path, message)
    pairs, none when it is valid FHIR."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        get_fhir_model_class(name).model_validate(resource)
    except ValidationError as exc:
        return [(_path(name, e["loc"]), _message(e)) for e in exc.errors()]
    except (ValueError, TypeError) as exc:  # a model's own check raising outside pydantic
        return [(name, " ".join(str(exc).split())[:300])]
    return []


def _problems(name: str, resource: dict[str, Any]) -> str:
    """Up to ``ERRORS_SHOWN`` problems of a resource in one line, each with its path."""
    found = problems(name, resource)
    shown = [f"{path}: {message}" for path, message in found[:ERRORS_SHOWN]]
    more = len(found) - ERRORS_SHOWN
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _path(name: str, loc: tuple[Any, ...]) -> str:
    """A FHIRPath-like element path: ``Bundle.entry[0].resource.status``."""
    out = name
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            out += "." + _PYTHON_NAMES.get(text, text.replace("__ext", "").replace("__", "_"))
    return out


def _message(error: Any) -> str:
    message = " ".join(str(error.get("msg", "")).split())
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message[:200]
