"""``/api/v1/processes``: supervisord's view of every program over its unix socket
(XML-RPC) with each outboxd process's ``/healthz``, and, for admins, starting,
stopping and restarting a program; each such action is in the audit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from supervisor.xmlrpc import Faults

from daemon.api.context import actor_of, control_of
from daemon.api.etag import cached_json
from daemon.api.params import json_response, read_query
from daemon.api.problems import Problem
from daemon.suite.readiness import survey
from daemon.suite.supervisor import (
    ACTION_TIMEOUT,
    RPC_TIMEOUT,
    Supervisor,
    SupervisorError,
    SupervisorUnavailable,
    supervisor_address,
)

ACTIONS = ("start", "stop", "restart")
NAME_PARAM = {"name": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}}


def _supervisor(timeout: float = RPC_TIMEOUT) -> Supervisor:
    try:
        return Supervisor(supervisor_address(), timeout)
    except ValueError as exc:
        raise Problem(503, f"supervisord: {exc}") from None


async def list_processes(request: web.Request) -> web.Response:
    read_query(request, ())
    try:
        status = await survey(_supervisor(), control_of(request).settings)
    except SupervisorUnavailable as exc:
        raise Problem(503, str(exc)) from None
    data = status.as_json()
    own = f"control-{control_of(request).context.process_num}"
    for program in data["programs"]:
        program.pop("uptime", None)  # moves every second: the ETag would never hold
        # the process answering: not stopped or restarted from here (409)
        program["answering"] = program["name"].split(":")[-1] == own
    return cached_json(request, {"items": data["programs"], "ready": data["ready"],
                                 "not_ready": data["not_ready"]})  # fmt: skip


def _action(name: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        control = control_of(request)
        program = request.match_info["name"]
        own = f"control-{control.context.process_num}"
        if name != "start" and program.split(":")[-1] == own:
            raise Problem(409, f"{program} is the process answering: {name} it with supervisorctl")
        supervisor = _supervisor(ACTION_TIMEOUT)  # it answers once the program has moved
        try:
            await asyncio.to_thread(getattr(supervisor, name), program)
            after = await asyncio.to_thread(supervisor.program, program)
        except SupervisorUnavailable as exc:
            raise Problem(503, str(exc)) from None
        except SupervisorError as exc:
            raise Problem(404 if exc.fault == Faults.BAD_NAME else 409, str(exc)) from None
        await control.store.record_action(
            actor_of(request), f"process.{name}", program, {"state": after.state}
        )
        return json_response({"name": after.fullname, "state": after.state, "pid": after.pid})

    handle.__name__ = name
    return handle


start, stop, restart = (_action(a) for a in ACTIONS)
