"""``/api/v1/schedules``: list, show, create, edit, delete, pause and resume with a
note, run now, backfill, and the fire ledger. Each is a step of
``daemon.operator.schedules``, as the CLI's commands are."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from daemon.api.context import control_of, operator_of
from daemon.api.etag import cached_json
from daemon.api.params import Param, json_response, model_of, read_json, read_query, read_time
from daemon.domain.limits import MAX_ID, MAX_RUNS, NAME_MAX, NAME_PATTERN
from daemon.domain.statuses import RUN_STATUSES
from daemon.operator import schedules as steps
from daemon.operator.requests import PauseIn, RangeIn, ResumeIn, ScheduleChangesIn, ScheduleIn

RUNS_QUERY = (
    Param("limit", "integer", "runs, newest first", minimum=1, maximum=MAX_RUNS, default=50),
    Param("before", "integer", "runs older than this id (the page cursor)", minimum=1,
          maximum=MAX_ID),
    Param("status", "enum", "only runs in these statuses", repeated=True,
          choices=tuple(RUN_STATUSES)),
)  # fmt: skip
NAME_PARAM = {"name": {"type": "string", "pattern": f"^{NAME_PATTERN}$", "maxLength": NAME_MAX}}
NEW_BODY, CHANGES_BODY, PAUSE_BODY, RANGE_BODY = ScheduleIn, ScheduleChangesIn, PauseIn, RangeIn


def _name(request: web.Request) -> str:
    return request.match_info["name"]


async def list_schedules(request: web.Request) -> web.Response:
    read_query(request, ())
    items = await steps.schedule_listing(operator_of(request), datetime.now(UTC))
    return cached_json(request, {"items": items})


async def show(request: web.Request) -> web.Response:
    read_query(request, ())
    shown = await steps.shown(operator_of(request), _name(request), datetime.now(UTC))
    return json_response(shown.detail)


async def create(request: web.Request) -> web.Response:
    op = operator_of(request)
    body = model_of(ScheduleIn, await read_json(request))
    row = await steps.add(op, body.name, body.definition)
    return json_response(
        steps.detail(row, [], op.settings, datetime.now(UTC)),
        status=201,
        headers={"Location": f"/api/v1/schedules/{row.name}"},
    )


async def edit(request: web.Request) -> web.Response:
    op = operator_of(request)
    changes = model_of(ScheduleChangesIn, await read_json(request)).root
    row, _ = await steps.edit(op, _name(request), changes)
    return json_response(steps.detail(row, [], op.settings, datetime.now(UTC)))


async def delete(request: web.Request) -> web.Response:
    await steps.remove(operator_of(request), _name(request))
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    op = operator_of(request)
    body = model_of(PauseIn, await read_json(request))
    row = await steps.pause(op, _name(request), body.note)
    return json_response(steps.detail(row, [], op.settings, datetime.now(UTC)))


async def resume(request: web.Request) -> web.Response:
    op = operator_of(request)
    if request.can_read_body:
        model_of(ResumeIn, await read_json(request))
    row, _ = await steps.resume(op, _name(request))
    return json_response(steps.detail(row, [], op.settings, datetime.now(UTC)))


async def run_now(request: web.Request) -> web.Response:
    row, run = await steps.run_now(operator_of(request), _name(request), datetime.now(UTC))
    return json_response({"run": run, "starts": steps.when_it_starts(row, one=True)}, status=202)


async def backfill(request: web.Request) -> web.Response:
    op = operator_of(request)
    body = model_of(RangeIn, await read_json(request))
    await steps.found_row(op, _name(request))  # no such schedule: 404 before the times
    zone = control_of(request).zone
    start, end = read_time(body.start, "from", zone), read_time(body.until, "until", zone)
    done = await steps.backfill(op, _name(request), start, end, datetime.now(UTC), body.dry_run)
    if done.dry_run:
        return json_response({"fires": done.fires, "queued": 0, "dry_run": True})
    return json_response(
        {
            "fires": done.fires,
            "queued": len(done.queued),
            "already": done.already,
            "runs": done.queued,
            "starts": steps.when_it_starts(done.row, one=False),
        },
        status=202,
    )


async def runs(request: web.Request) -> web.Response:
    query = read_query(request, RUNS_QUERY)
    found = await steps.ledger(
        operator_of(request), _name(request), query["limit"], query["before"], query["status"]
    )
    next_cursor = found[-1].id if len(found) == query["limit"] else None
    return cached_json(request, {"items": [steps.run_json(r) for r in found], "next": next_cursor})
