"""``/api/v1/schedules``: list, show, create, edit, delete, pause and resume with a
note, run now, backfill, the fire ledger and cancelling a run of it; and
``/api/v1/notifications``, the notifications sent. Each is a step of
``daemon.operator.schedules``, as the CLI's commands are."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from daemon.api.context import control_of, operator_of
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
from daemon.domain.limits import MAX_ID, MAX_PAGE, MAX_RUNS, NAME_MAX, NAME_PATTERN
from daemon.domain.statuses import NOTIFICATION_EVENTS, RUN_STATUSES, RUNNING
from daemon.operator import schedules as steps
from daemon.operator.requests import (
    CancelRunIn,
    PauseIn,
    RangeIn,
    ResumeIn,
    RunIn,
    ScheduleChangesIn,
    ScheduleIn,
)

RUNS_QUERY = (
    Param("limit", "integer", "runs, newest first", minimum=1, maximum=MAX_RUNS, default=50),
    Param("before", "integer", "runs older than this id (the page cursor)", minimum=1,
          maximum=MAX_ID),
    Param("status", "enum", "only runs in these statuses", repeated=True,
          choices=tuple(RUN_STATUSES)),
)  # fmt: skip
NAME_PARAM = {"name": {"type": "string", "pattern": f"^{NAME_PATTERN}$", "maxLength": NAME_MAX}}
NEW_BODY, CHANGES_BODY, PAUSE_BODY, RANGE_BODY = ScheduleIn, ScheduleChangesIn, PauseIn, RangeIn
RESUME_BODY, RUN_BODY = ResumeIn, RunIn  # optional: the body may be left out
CANCEL_BODY = CancelRunIn
NOTIFICATIONS_QUERY = (
    Param("limit", "integer", "notifications, newest first", minimum=1, maximum=MAX_PAGE,
          default=50),
    Param("before", "integer", "older than this id (the page cursor)", minimum=1,
          maximum=MAX_ID),
    Param("rule", "string", "of this rule (run_failed:nightly, report:daily …)", max_length=128),
    Param("subject", "string", "about this schedule or channel", max_length=255),
    Param("target", "string", "sent to this notify target", max_length=NAME_MAX),
    Param("event", "enum", "only these events", repeated=True, choices=NOTIFICATION_EVENTS),
    Param("ok", "enum", "true: those the target took; false: those it did not",
          choices=("true", "false")),
)  # fmt: skip


def path_params(path: str) -> dict[str, dict[str, object]]:
    """The schemas of a schedules path's parameters."""
    found: dict[str, dict[str, object]] = {}
    if "{name}" in path:
        found.update(NAME_PARAM)
    if "{id}" in path:
        found["id"] = ID_SCHEMA
    return found


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
    body = model_of(PauseIn, await read_json(request))
    op = operator_of(request).giving(body.reason)
    row = await steps.pause(op, _name(request), body.note)
    return json_response(steps.detail(row, [], op.settings, datetime.now(UTC)))


async def resume(request: web.Request) -> web.Response:
    body = model_of(ResumeIn, await read_json(request)) if request.can_read_body else ResumeIn()
    op = operator_of(request).giving(body.reason)
    row, _ = await steps.resume(op, _name(request))
    return json_response(steps.detail(row, [], op.settings, datetime.now(UTC)))


async def run_now(request: web.Request) -> web.Response:
    body = model_of(RunIn, await read_json(request)) if request.can_read_body else RunIn()
    op = operator_of(request).giving(body.reason)
    row, run = await steps.run_now(op, _name(request), datetime.now(UTC))
    return json_response({"run": run, "starts": steps.when_it_starts(row, one=True)}, status=202)


async def backfill(request: web.Request) -> web.Response:
    body = model_of(RangeIn, await read_json(request))
    op = operator_of(request).giving(body.reason)
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


async def cancel_run(request: web.Request) -> web.Response:
    """200 when the run was queued and is cancelled; 202 when it is running and its
    scheduler has been asked to stop it."""
    op = operator_of(request)
    note = model_of(CancelRunIn, await read_json(request)).note if request.can_read_body else None
    done = await steps.cancel_run(op, _name(request), path_id(request, "run"), note)
    status = 202 if done.run.status == RUNNING else 200
    return json_response({"run": steps.run_json(done.run), "said": done.said}, status=status)


async def notifications(request: web.Request) -> web.Response:
    query = read_query(request, NOTIFICATIONS_QUERY)
    ok = {"true": True, "false": False}.get(query["ok"]) if query["ok"] else None
    sent = await steps.notifications(
        operator_of(request), query["limit"], query["before"], query["rule"], query["subject"],
        query["target"], query["event"], ok,
    )  # fmt: skip
    next_cursor = sent[-1].id if len(sent) == query["limit"] else None
    return cached_json(
        request, {"items": [steps.notification_json(n) for n in sent], "next": next_cursor}
    )
