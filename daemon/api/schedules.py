"""``/api/v1/schedules``: list, show, create, edit, delete, pause and resume with a
note, run now, backfill, and the fire ledger; the rules are ``daemon.operator.schedules``'s,
as the CLI's are."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
from aiohttp import web

from daemon.api.context import actor_of, control_of
from daemon.api.etag import cached_json
from daemon.api.params import Param, json_response, model_of, read_json, read_query, read_time
from daemon.api.problems import Problem
from daemon.domain.errors import Refused
from daemon.domain.schedules import ScheduleError, ScheduleRow
from daemon.domain.statuses import RUN_STATUSES
from daemon.operator import schedules as admin

MAX_RUNS = 500
RUNS_QUERY = (
    Param("limit", "integer", "runs, newest first", minimum=1, maximum=MAX_RUNS, default=50),
    Param("before", "integer", "runs older than this id (the page cursor)", minimum=1,
          maximum=2**63 - 1),
    Param("status", "enum", "only runs in these statuses", repeated=True,
          choices=tuple(RUN_STATUSES)),
)  # fmt: skip
NAME_PARAM = {"name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"}}


def problem_of(exc: Refused | ScheduleError) -> Problem:
    if isinstance(exc, ScheduleError):
        text = str(exc)
        return Problem(404 if text.startswith("no schedule") else 409, text)
    status = 404 if exc.kind == "missing" else 400
    return Problem(status, str(exc), field=exc.field)


async def _row(request: web.Request) -> ScheduleRow:
    control = control_of(request)
    name = request.match_info["name"]
    try:
        return admin.found(await control.store.schedule(name), name, control.settings)
    except Refused as exc:
        raise problem_of(exc) from None


class NewSchedule(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    name: str = pydantic.Field(min_length=1, max_length=64)
    definition: dict[str, Any]


class Note(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    note: str | None = pydantic.Field(default=None, max_length=1000)


class Range(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    start: str = pydantic.Field(alias="from", max_length=64)
    until: str = pydantic.Field(max_length=64)
    dry_run: bool = False


SCHEDULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "the keys of a schedule in the YAML file (cron or every, job, options, …)",
}
NEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "definition"],
    "properties": {"name": NAME_PARAM["name"], "definition": SCHEDULE_SCHEMA},
}
NOTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["note"],
    "properties": {
        "note": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "\\S",
                 "description": "why it is paused (shown with the schedule)"},
    },
}  # fmt: skip
RANGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["from", "until"],
    "properties": {
        "from": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "dry_run": {"type": "boolean"},
    },
}


async def list_schedules(request: web.Request) -> web.Response:
    control = control_of(request)
    read_query(request, ())
    rows = await control.store.schedules()
    recent = await control.store.runs(limit=1000)
    try:
        items = admin.listing(rows, recent, control.settings, datetime.now(UTC))
    except Refused as exc:
        raise problem_of(exc) from None
    return cached_json(request, {"items": items})


async def show(request: web.Request) -> web.Response:
    read_query(request, ())
    row = await _row(request)
    control = control_of(request)
    runs = await control.store.runs(row.name, limit=10)
    try:
        return json_response(admin.detail(row, runs, control.settings, datetime.now(UTC)))
    except Refused as exc:
        raise problem_of(exc) from None


async def create(request: web.Request) -> web.Response:
    control = control_of(request)
    body = model_of(NewSchedule, await read_json(request))
    try:
        stored = admin.new_definition(body.name, body.definition, control.settings)
        row = await control.store.put_schedule(body.name, stored, actor_of(request), create=True)
    except (Refused, ScheduleError) as exc:
        raise problem_of(exc) from None
    return json_response(
        admin.detail(row, [], control.settings, datetime.now(UTC)),
        status=201,
        headers={"Location": f"/api/v1/schedules/{row.name}"},
    )


async def edit(request: web.Request) -> web.Response:
    control = control_of(request)
    changes = await read_json(request)
    if not isinstance(changes, dict):
        raise Problem(400, "body: expected a JSON object of the settings to change")
    row = await _row(request)
    try:
        stored = admin.edited_definition(row, changes, control.settings)
        if stored != row.definition:
            row = await control.store.put_schedule(
                row.name, stored, actor_of(request), create=False
            )
    except (Refused, ScheduleError) as exc:
        raise problem_of(exc) from None
    return json_response(admin.detail(row, [], control.settings, datetime.now(UTC)))


async def delete(request: web.Request) -> web.Response:
    row = await _row(request)
    try:
        await control_of(request).store.remove_schedule(row.name, actor_of(request))
    except ScheduleError as exc:
        raise problem_of(exc) from None
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    body = model_of(Note, await read_json(request))
    try:
        note = admin.pause_note(body.note)
    except Refused as exc:
        raise problem_of(exc) from None
    return await _set_paused(request, True, note)


async def resume(request: web.Request) -> web.Response:
    if request.can_read_body:
        model_of(Note, await read_json(request))
    return await _set_paused(request, False, None)


async def _set_paused(request: web.Request, paused: bool, note: str | None) -> web.Response:
    control = control_of(request)
    row = await _row(request)
    if row.paused != paused or paused:
        try:
            row = await control.store.pause_schedule(row.name, paused, note, actor_of(request))
        except ScheduleError as exc:
            raise problem_of(exc) from None
    return json_response(admin.detail(row, [], control.settings, datetime.now(UTC)))


async def run_now(request: web.Request) -> web.Response:
    control = control_of(request)
    row = await _row(request)
    now = datetime.now(UTC)
    queued = await control.store.queue_runs(
        row.id, [now], "manual", note="run now", actor=actor_of(request)
    )
    if not queued:
        raise Problem(409, "the run was not queued (one for this very instant exists)")
    return json_response(
        {"run": queued[0], "starts": admin.when_it_starts(row, one=True)}, status=202
    )


async def backfill(request: web.Request) -> web.Response:
    control = control_of(request)
    body = model_of(Range, await read_json(request))
    row = await _row(request)
    zone = control.zone
    start, end = read_time(body.start, "from", zone), read_time(body.until, "until", zone)
    try:
        fires = admin.backfill_fires(row, control.settings, start, end, datetime.now(UTC))
    except Refused as exc:
        raise problem_of(exc) from None
    if body.dry_run:
        return json_response({"fires": len(fires), "queued": 0, "dry_run": True})
    queued = await control.store.queue_runs(
        row.id, fires, "backfill", note="backfill", actor=actor_of(request)
    )
    return json_response(
        {
            "fires": len(fires),
            "queued": len(queued),
            "already": len(fires) - len(queued),
            "runs": queued,
            "starts": admin.when_it_starts(row, one=False),
        },
        status=202,
    )


async def runs(request: web.Request) -> web.Response:
    control = control_of(request)
    query = read_query(request, RUNS_QUERY)
    row = await _row(request)
    found = await control.store.runs(
        row.name, limit=query["limit"], before_id=query["before"], statuses=query["status"]
    )
    next_cursor = found[-1].id if len(found) == query["limit"] else None
    return cached_json(request, {"items": [admin.run_json(r) for r in found], "next": next_cursor})
