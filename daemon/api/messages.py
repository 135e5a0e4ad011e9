"""``/api/v1/messages``: enqueue one message or a batch."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from aiohttp import web

from daemon.api.context import actor_of, control_of
from daemon.api.params import json_response, model_of, read_json
from daemon.api.problems import bad_request
from daemon.intake import Handed, Refused, new_message
from daemon.store.types import InvalidMessage

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
        "kind": {"type": "string", "maxLength": 64},
        "after": {"type": "string", "maxLength": 255},
        "group": {"type": "string", "maxLength": 255},
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
