"""``/api/v1/messages``: enqueue one message or a batch, list them (keyset pages,
newest first), show one with its timeline, retry, cancel or resend by ids or by a
filter (with a dry run), and the bulk operations a large filter starts. Each is a
step of ``daemon.operator.messages``, as the CLI's commands are."""

from __future__ import annotations

from aiohttp import web

from daemon.api.context import control_of, operator_of
from daemon.api.endpoints import Handler
from daemon.api.etag import cached_json
from daemon.api.params import (
    ID_SCHEMA,
    Param,
    json_response,
    model_of,
    path_id,
    read_json,
    read_query,
    read_time,
)
from daemon.api.problems import bad_request, refused
from daemon.domain.errors import Refused
from daemon.domain.limits import CURSOR_MAX, KEY_MAX, KIND_MAX, MAX_PAGE, NAME_MAX, NAME_PATTERN
from daemon.domain.search import (
    FIELD_NAMES,
    FIELD_VALUE_MAX,
    FIELD_VALUE_PATTERN,
    SEARCH_FIELDS,
    TEXT_MAX,
    TEXT_RULE,
)
from daemon.domain.selection import FILTER_FIELDS, MessageFilter
from daemon.domain.statuses import STATUSES
from daemon.operator import messages as ops
from daemon.operator.requests import ActionIn, BatchIn, EnqueueIn, FilterIn, MessageIn
from daemon.operator.shapes import operation_json, page_json, result_json, timeline_json

ENQUEUE_BODY = EnqueueIn
ACTION_BODY = ActionIn


async def enqueue(request: web.Request) -> web.Response:
    """Store one message (a JSON object) or a batch (``{"messages": [...]}``, at
    most ``MAX_BATCH``) in one transaction, idempotent on (channel, key); answers at once."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("body: expected a JSON object")
    handed: MessageIn | BatchIn = (
        model_of(BatchIn, body) if "messages" in body else model_of(MessageIn, body)
    )
    try:
        stored = await ops.enqueue(operator_of(request), handed)
    except Refused as exc:
        raise refused(exc, naming=True) from None
    items = [
        {"id": s.result.id, "created": s.result.created, "status": s.result.status,
         "channel": s.channel, "key": s.key}
        for s in stored
    ]  # fmt: skip
    status = 201 if any(s.result.created for s in stored) else 200
    return json_response({"items": items}, status=status)


# --- listing and showing ------------------------------------------------------------------

LIST_QUERY = (
    Param("channel", "string", "one channel", max_length=NAME_MAX,
          schema_extra={"pattern": f"^{NAME_PATTERN}$"}),
    Param("status", "enum", "statuses, any of them", repeated=True, choices=STATUSES),
    Param("kind", "string", "the payload kind", max_length=KIND_MAX),
    Param("key", "string", "keys starting with this (needs channel)", max_length=KEY_MAX),
    Param("since", "date-time", "created at or after (default: the last 7 days)"),
    Param("until", "date-time", "created before"),
    Param("q", "string", f"payloads holding this text, in any case ({TEXT_RULE}); a search "
          "covers every message stored unless since is given, newest stored first",
          max_length=TEXT_MAX),
    *(Param(name, "string", f"messages stored with this {what} ({where} of an HL7 message), "
            "exactly", max_length=FIELD_VALUE_MAX,
            schema_extra={"pattern": f"^{FIELD_VALUE_PATTERN}$"})
      for name, (what, where) in SEARCH_FIELDS.items()),
    Param("limit", "integer", "items per page", minimum=1, maximum=MAX_PAGE, default=50),
    Param("cursor", "string", "the `next` of the page before", max_length=CURSOR_MAX,
          schema_extra={"pattern": "^[A-Za-z0-9_-]+$"}),
)  # fmt: skip
ID_PARAM = {"id": ID_SCHEMA}


async def list_messages(request: web.Request) -> web.Response:
    control = control_of(request)
    q = read_query(request, LIST_QUERY, control.zone)
    selector = MessageFilter(
        channel=q["channel"], statuses=tuple(q["status"]), since=q["since"], until=q["until"],
        kind=q["kind"], key_prefix=q["key"], text=q["q"],
        fields=tuple((name, q[name]) for name in FIELD_NAMES if q[name] is not None),
    )  # fmt: skip
    page = await ops.listing(operator_of(request), selector, q["limit"], q["cursor"])
    return cached_json(request, page_json(page))


async def show(request: web.Request) -> web.Response:
    read_query(request, ())
    timeline = await ops.timeline(operator_of(request), path_id(request))
    return cached_json(request, timeline_json(timeline, control_of(request).zone))


# --- retry, cancel, resend ----------------------------------------------------------------

# how a body names the parts of a selection
NAMES = {
    "ids": "ids",
    "filter": "filter",
    "selectors": f"a filter ({', '.join(FILTER_FIELDS)})",
    **{name: f"filter.{name}" for name in FILTER_FIELDS},
}


def _filter(given: FilterIn | None, request: web.Request) -> MessageFilter | None:
    if given is None:
        return None
    zone = control_of(request).zone
    return MessageFilter(
        channel=given.channel, statuses=tuple(given.status or ()), kind=given.kind,
        key_prefix=given.key,
        since=read_time(given.since, "filter.since", zone) if given.since else None,
        until=read_time(given.until, "filter.until", zone) if given.until else None,
        text=given.q, fields=given.search_fields(),
    )  # fmt: skip


def _action(name: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        control = control_of(request)
        body = model_of(ActionIn, await read_json(request))
        selector = ops.selection(body.ids, _filter(body.filter, request), NAMES)
        op = operator_of(request).giving(body.reason)
        result = await ops.act(op, name, selector, body.dry_run, NAMES)
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
    operation = await ops.operation(operator_of(request), path_id(request, "operation"))
    return cached_json(request, operation_json(operation))
