"""Reading a request: query parameters declared per endpoint (an unknown one is a
400 naming it), JSON bodies checked by a pydantic model (an unknown field, a
wrong type: a 400 naming the field)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pydantic
from aiohttp import web

from daemon.api.context import control_of
from daemon.api.problems import Problem, bad_request, refused
from daemon.domain import jsontext
from daemon.domain.errors import Refused
from daemon.domain.limits import MAX_ID, TIME_MAX, read_id
from daemon.domain.units import format_duration
from daemon.operator.requests import parse

M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, its type for the OpenAPI document and how to read it."""

    name: str
    kind: str  # "string", "integer", "date-time", "enum"
    description: str = ""
    repeated: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None
    max_length: int = 1000  # of a string: the request line must stay within the server's limit
    schema_extra: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        base: dict[str, Any]
        if self.kind == "integer":
            base = {"type": "integer"}
            if self.minimum is not None:
                base["minimum"] = self.minimum
            if self.maximum is not None:
                base["maximum"] = self.maximum
        elif self.kind == "date-time":
            base = {"type": "string", "format": "date-time", "maxLength": TIME_MAX}
        elif self.kind == "enum":
            base = {"type": "string", "enum": list(self.choices)}
        else:
            base = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        if self.default is not None:
            base["default"] = self.default
        base.update(self.schema_extra)
        if not self.repeated:
            return base
        return {"type": "array", "items": base, "maxItems": self.max_items}

    @property
    def max_items(self) -> int:
        """How many values a repeated parameter takes: each choice once, or 100."""
        return len(self.choices) if self.choices else 100


def read_query(
    request: web.Request, params: tuple[Param, ...], zone: ZoneInfo | None = None
) -> dict[str, Any]:
    """The declared parameters of the query string, read; anything else is a 400."""
    declared = {p.name: p for p in params}
    out: dict[str, Any] = {p.name: ([] if p.repeated else p.default) for p in params}
    for name in request.query:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise bad_request(f"unknown query parameter {name!r} (known: {known})", name)
    for p in params:
        values = request.query.getall(p.name, [])
        if not values:
            continue
        if not p.repeated and len(values) > 1:
            raise bad_request(f"{p.name}: give it once", p.name)
        read = [_value(p, v, zone) for part in values for v in _split(p, part)]
        if p.repeated and len(read) > p.max_items:
            raise bad_request(f"{p.name}: at most {p.max_items} values", p.name)
        out[p.name] = read if p.repeated else read[0]
    return out


def _split(p: Param, text: str) -> list[str]:
    return [v for v in text.split(",") if v] if p.repeated else [text]


def _value(p: Param, text: str, zone: ZoneInfo | None) -> Any:
    if p.kind == "integer":
        if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 19:
            raise bad_request(f"{p.name}: {text[:40]!r} is not a whole number", p.name)
        number = int(text)
        if (p.minimum is not None and number < p.minimum) or (
            p.maximum is not None and number > p.maximum
        ):
            raise bad_request(f"{p.name}: {number} is outside {p.minimum}..{p.maximum}", p.name)
        return number
    if p.kind == "date-time":
        if len(text) > TIME_MAX:
            raise bad_request(f"{p.name}: {text[:40]!r}… is too long for a time", p.name)
        return read_time(text, p.name, zone)
    if p.kind == "enum":
        if text not in p.choices:
            raise bad_request(
                f"{p.name}: {text[:40]!r} is not one of {', '.join(p.choices)}", p.name
            )
        return text
    if not text:
        raise bad_request(f"{p.name}: empty (give a value or leave it out)", p.name)
    if len(text) > p.max_length or not text.isprintable():
        raise bad_request(f"{p.name}: too long or not printable", p.name)
    return text


def check_path(request: web.Request, schemas: Mapping[str, Mapping[str, Any]]) -> None:
    """The path's text parameters against their schema in the document: printable
    (a NUL would reach the database), within ``maxLength``, matching ``pattern``;
    else a 400 naming the parameter."""
    for name, schema in schemas.items():
        if schema.get("type") != "string":
            continue
        value = request.match_info.get(name, "")
        if not value.isprintable() or len(value) > schema.get("maxLength", 1000):
            raise bad_request(f"{name}: too long or not printable", name)
        pattern = schema.get("pattern")
        if pattern is not None and re.search(pattern, value) is None:
            raise bad_request(f"{name}: {value[:40]!r} does not match {pattern}", name)


def read_time(text: str, name: str, zone: ZoneInfo | None = None) -> datetime:
    """An ISO 8601 time; one without an offset is in ``zone`` (the file's timezone)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name}: {text[:40]!r} is not an ISO 8601 time", name) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone or UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise bad_request(f"{name}: {text[:40]!r} is out of range", name) from None


async def read_body(request: web.Request) -> bytes:
    """The request's body, all of it: at most ``control.max_body`` (413), within
    ``control.body_timeout`` (408, and the connection closed: a body trickled in a
    byte at a time holds nothing for long)."""
    limit = control_of(request).settings.control.body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise Problem(
            408,
            f"the body did not arrive within {format_duration(limit)} (control.body_timeout)",
            close=True,
        ) from None


async def read_json(request: web.Request) -> Any:
    """The body as JSON (RFC 8259: no NaN, no key given twice): anything else is
    a 400 (or 415)."""
    if request.content_type != "application/json":
        raise Problem(415, "send the body as application/json")
    body = await read_body(request)
    charset = request.charset or "utf-8"
    try:
        text = body.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:  # bytes not of the charset, or no such charset
        raise bad_request(f"the body is not JSON text in {charset}: {exc}") from None
    try:
        return jsontext.loads(text)
    except jsontext.NotJson as exc:
        where = f" ({exc.path})" if exc.path else ""
        raise bad_request(f"the body is not JSON{where}: {exc}", exc.path) from None


def model_of(model: type[M], data: Any) -> M:
    """``data`` checked by ``model`` (``daemon.operator.requests``); the first
    error is a 400 naming its field."""
    try:
        return parse(model, data)
    except Refused as exc:
        raise refused(exc, naming=True) from None


ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def path_id(request: web.Request, what: str = "message") -> int:
    """The ``{id}`` of the path, or a 400 naming it."""
    text = request.match_info["id"]
    found = read_id(text) if text == text.strip() else None
    if found is None:
        raise bad_request(f"id: {text[:40]!r} is not a {what} id", "id")
    return found


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, default=_default),
        content_type="application/json",
        headers=headers,
    )


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


Reader = Callable[[str], Any]
