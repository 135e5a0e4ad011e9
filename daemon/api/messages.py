"""``/api/v1/messages``: enqueue one message or a batch, list them (keyset pages,
newest first), show one with its timeline, retry, cancel or resend by ids or by a
filter (with a dry run), and the bulk operations a large filter starts. The rules
and the JSON are the store's and ``daemon.operator.shapes``'s, as the CLI's are."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from aiohttp import web

from daemon.api.context import actor_of, control_of
from daemon.api.etag import cached_json
from daemon.api.params import Param, json_response, model_of, read_json, read_query, read_time
from daemon.api.problems import Problem, bad_request
from daemon.domain.errors import Refused
from daemon.domain.messages import InvalidMessage
from daemon.domain.selection import InvalidCursor, MessageFilter, OperatorRefused
from daemon.domain.statuses import STATUSES
from daemon.operator.enqueue import Handed, new_message
from daemon.operator.shapes import operation_json, page_json, result_json, timeline_json

MAX_BATCH = 500


class MessageIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    channel: str = pydantic.Field(min_length=1, max_length=128)
    key: str = pydantic.Field(min_length=1, max_length=255)
    payload: str | dict[str, Any] | list[Any]
    kind: str | None = pydantic.Field(default=None, max_length=64)
    after: str | None = pydantic.Field(default=None, max_length=255)
    group: str | None = pydantic.Field(default=None, max_length=255)

    def handed(self) -> Handed:
        payload = self.payload if isinstance(self.payload, str) else json.dumps(self.payload)
        return Handed(
            self.channel, self.key, payload.encode("utf-8"), self.kind, self.after, self.group
        )


class BatchIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    messages: list[dict[str, Any]] = pydantic.Field(min_length=1, max_length=MAX_BATCH)


MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["channel", "key", "payload"],
    "properties": {
        "channel": {"type": "string", "minLength": 1, "maxLength": 128},
        "key": {"type": "string", "minLength": 1, "maxLength": 255},
        "payload": {
            "description": "the bytes to send, as text; a JSON value is sent as its JSON text",
            "type": ["string", "object", "array"],
        },
        "kind": {"type": ["string", "null"], "maxLength": 64},
        "after": {"type": ["string", "null"], "maxLength": 255},
        "group": {"type": ["string", "null"], "maxLength": 255},
    },
}
ENQUEUE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        MESSAGE_SCHEMA,
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["messages"],
            "properties": {
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                    "items": MESSAGE_SCHEMA,
                }
            },
        },
    ]
}


async def enqueue(request: web.Request) -> web.Response:
    """Store one message (a JSON object) or a batch (``{"messages": [...]}``, at
    most 500) in one transaction, idempotent on (channel, key); answers at once."""
    control = control_of(request)
    body = await read_json(request)
    if isinstance(body, dict) and "messages" in body:
        raw = model_of(BatchIn, body).messages
        prefix = "messages[{}]."
    else:
        raw = [body]
        prefix = ""
    batch = []
    for i, item in enumerate(raw):
        where = prefix.format(i)
        if not isinstance(item, dict):
            raise bad_request(
                f"{where or 'body'}: expected a JSON object", where.rstrip(".") or None
            )
        message = model_of(MessageIn, item, where)
        try:
            batch.append(new_message(control.settings, message.handed()))
        except Refused as exc:
            raise bad_request(f"{where}{exc.field}: {exc}", where + exc.field) from None
    try:
        results = await control.store.enqueue_many(batch, actor=actor_of(request))
    except InvalidMessage as exc:
        raise bad_request(str(exc)) from None
    items = [
        {"id": r.id, "created": r.created, "status": r.status, "channel": m.channel, "key": m.key}
        for m, r in zip(batch, results, strict=True)
    ]
    status = 201 if any(r.created for r in results) else 200
    return json_response({"items": items}, status=status)


# --- listing and showing ------------------------------------------------------------------

LIST_QUERY = (
    Param("channel", "string", "one channel", max_length=64,
          schema_extra={"pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"}),
    Param("status", "enum", "statuses, any of them", repeated=True, choices=STATUSES),
    Param("kind", "string", "the payload kind", max_length=64),
    Param("key", "string", "keys starting with this (needs channel)", max_length=255),
    Param("since", "date-time", "created at or after (default: the last 7 days)"),
    Param("until", "date-time", "created before"),
    Param("limit", "integer", "items per page", minimum=1, maximum=500, default=50),
    Param("cursor", "string", "the `next` of the page before", max_length=200,
          schema_extra={"pattern": "^[A-Za-z0-9_-]+$"}),
)  # fmt: skip
ID_PARAM = {"id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}


async def list_messages(request: web.Request) -> web.Response:
    control = control_of(request)
    q = read_query(request, LIST_QUERY, control.zone)
    selector = MessageFilter(
        channel=q["channel"], statuses=tuple(q["status"]), since=q["since"], until=q["until"],
        kind=q["kind"], key_prefix=q["key"],
    )  # fmt: skip
    try:
        page = await control.store.list_messages(
            selector, limit=q["limit"], cursor=q["cursor"],
            known_channels=list(control.settings.channels),
        )  # fmt: skip
    except InvalidCursor as exc:
        raise bad_request(f"cursor: {exc}", "cursor") from None
    except OperatorRefused as exc:
        raise bad_request(str(exc), _field_of(str(exc))) from None
    return cached_json(request, page_json(page))


def _message_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise bad_request(f"id: {text[:40]!r} is not a message id", "id")
    return int(text)


async def show(request: web.Request) -> web.Response:
    read_query(request, ())
    message_id = _message_id(request)
    timeline = await control_of(request).store.message_timeline(message_id)
    if timeline is None:
        raise Problem(404, f"no message with id {message_id}")
    return cached_json(request, timeline_json(timeline))


# --- retry, cancel, resend ----------------------------------------------------------------


class FilterIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    channel: str | None = pydantic.Field(default=None, max_length=128)
    status: list[str] | str | None = None
    kind: str | None = pydantic.Field(default=None, max_length=64)
    key: str | None = pydantic.Field(default=None, max_length=255)
    since: str | None = pydantic.Field(default=None, max_length=64)
    until: str | None = pydantic.Field(default=None, max_length=64)


class ActionIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    ids: list[int] | None = pydantic.Field(default=None, min_length=1, max_length=10_000)
    filter: FilterIn | None = None
    dry_run: bool = False


_STATUS = {"type": "string", "enum": list(STATUSES)}
FILTER_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "null or a field left out: not filtered on",
    "additionalProperties": False,
    "properties": {
        "channel": {"type": ["string", "null"], "maxLength": 128},
        "status": {"anyOf": [{"type": "array", "items": _STATUS}, _STATUS, {"type": "null"}]},
        "kind": {"type": ["string", "null"], "maxLength": 64},
        "key": {
            "type": ["string", "null"],
            "maxLength": 255,
            "description": "a key prefix (needs channel)",
        },
        "since": {"type": ["string", "null"], "format": "date-time", "maxLength": 64},
        "until": {"type": ["string", "null"], "format": "date-time", "maxLength": 64},
    },
}
ACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "ids": {"type": ["array", "null"], "minItems": 1, "maxItems": 10_000,
                "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
        "filter": FILTER_SCHEMA,
        "dry_run": {"type": "boolean"},
    },
}  # fmt: skip


def _selector(body: ActionIn, request: web.Request) -> MessageFilter:
    if body.ids is not None and body.filter is not None:
        raise bad_request("give ids or a filter, not both", "filter")
    if body.ids is not None:
        if any(not 0 < i < 2**63 for i in body.ids):
            raise bad_request("ids: message ids are whole numbers from 1", "ids")
        return MessageFilter(ids=tuple(body.ids))
    if body.filter is None:
        raise bad_request("give ids, or a filter (channel, status, kind, key, since, until)")
    f = body.filter
    zone = control_of(request).zone
    statuses = [f.status] if isinstance(f.status, str) else list(f.status or [])
    for status in statuses:
        if status not in STATUSES:
            raise bad_request(
                f"filter.status: {status[:40]!r} is not one of {', '.join(STATUSES)}",
                "filter.status",
            )
    selector = MessageFilter(
        channel=f.channel, statuses=tuple(statuses), kind=f.kind, key_prefix=f.key,
        since=read_time(f.since, "filter.since", zone) if f.since else None,
        until=read_time(f.until, "filter.until", zone) if f.until else None,
    )  # fmt: skip
    if not selector.by_filter:
        raise bad_request("filter: name at least one of channel, status, kind, key, since, until")
    return selector


def _field_of(text: str) -> str | None:
    for name, at in (("key prefix", "key"), ("channel", "channel"), ("status", "status"),
                     ("since", "since"), ("limit", "limit")):  # fmt: skip
        if name in text:
            return at
    return None


def _action(name: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        control = control_of(request)
        body = model_of(ActionIn, await read_json(request))
        selector = _selector(body, request)
        operation = getattr(control.store, name)
        try:
            result = await operation(
                selector, actor=actor_of(request), dry_run=body.dry_run,
                known_channels=list(control.settings.channels),
            )  # fmt: skip
        except OperatorRefused as exc:
            at = _field_of(str(exc))
            raise bad_request(str(exc), f"filter.{at}" if at and body.filter else at) from None
        answer = result_json(result)
        if result.operation is not None:
            control.wake_operations()
            return json_response(
                answer, status=202,
                headers={"Location": f"/api/v1/operations/{result.operation}"},
            )  # fmt: skip
        return json_response(answer)

    handle.__name__ = name
    return handle


retry = _action("retry")
cancel = _action("cancel")
resend = _action("resend")


async def show_operation(request: web.Request) -> web.Response:
    read_query(request, ())
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise bad_request(f"id: {text[:40]!r} is not an operation id", "id")
    operation = await control_of(request).store.operation(int(text))
    if operation is None:
        raise Problem(404, f"no operation with id {text}")
    return cached_json(request, operation_json(operation))
