"""Is the suite ready? supervisord's view of every program (``daemon.suite.supervisor``,
asked on a thread) and, for outboxd's own processes, their ``/healthz``.

An outboxd program is named ``ROLE-N`` (supervisord's
``%(program_name)s-%(process_num)d``): its health URL is ``roles.ROLE.host`` :
``roles.ROLE.base_port`` + N from the YAML settings given, read with this
process's environment (the ``OUTBOXD_*_PORT`` variables must be those the suite
was started with). The health checks are aiohttp requests made at once, each
within a short timeout, so ``survey`` suits the CLI (``asyncio.run``) and an
async role alike.

A program is ready when supervisord says RUNNING and, for an outboxd role, its
``/healthz`` answers 200 with ``"status": "ok"`` from that role and process.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from daemon.config.settings import RolesSettings, Settings
from daemon.runtime.frame import NoHealthPort, health_address
from daemon.suite.supervisor import RUNNING, Program, Supervisor

HEALTH_TIMEOUT = 2.0  # seconds one /healthz may take
ROLE_PROGRAM = re.compile(r"(?P<role>[a-z]+)-(?P<num>[0-9]{1,5})")
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def role_of(program: Program) -> tuple[str, int] | None:
    """(role, process number) of an outboxd program (``dispatcher-1``), else None."""
    match = ROLE_PROGRAM.fullmatch(program.name)
    if match is None or match["role"] not in RolesSettings.model_fields:
        return None
    return match["role"], int(match["num"])


def health_url(settings: Settings, role: str, process_num: int) -> str:
    """Where that process answers /healthz (``NoHealthPort`` when the number gives none)."""
    host, port = health_address(settings, role, process_num)
    host = ANY_ADDRESS.get(host, host)
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


@dataclass(frozen=True)
class Health:
    """One /healthz answer, or why there was none."""

    url: str
    status: int | None = None  # the HTTP status
    body: dict[str, Any] | None = None  # the JSON answer
    error: str | None = None  # no answer, or not outboxd's

    @property
    def ready(self) -> bool:
        return (
            self.error is None
            and self.status == 200
            and self.body is not None
            and self.body.get("status") == "ok"
        )

    @property
    def problems(self) -> list[str]:
        if self.ready:
            return []
        if self.error is not None:
            return [self.error]
        listed = (self.body or {}).get("problems")
        if isinstance(listed, list) and listed:
            return [str(p) for p in listed]
        return [f"/healthz answered {self.status}"]

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "body": self.body,
            "error": self.error,
            "ready": self.ready,
        }


async def check_health(
    session: aiohttp.ClientSession,
    url: str,
    role: str,
    process_num: int,
    timeout: float = HEALTH_TIMEOUT,
) -> Health:
    """GET ``url``: its status and JSON, checked to come from ``role``'s process
    ``process_num`` (another program may hold the port)."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            status = response.status
            text = await response.text(errors="replace")
    except TimeoutError:
        return Health(url, error=f"no answer from {url} within {timeout:g}s")
    except aiohttp.ClientError as exc:
        why = getattr(exc, "os_error", None)
        reason = why.strerror if isinstance(why, OSError) and why.strerror else str(exc)
        return Health(url, error=f"no answer from {url}: {reason or type(exc).__name__}")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        return Health(url, status, error=f"{url} is not an outboxd /healthz (HTTP {status})")
    if body.get("role") != role or body.get("process") != process_num:
        holder = f"{body.get('role')}-{body.get('process')}"
        return Health(url, status, body, error=f"{url} is answered by {holder}, not this program")
    return Health(url, status, body)


def state_text(program: Program) -> str:
    """Why a program that is not RUNNING is not, from supervisord's words."""
    p = program
    when = f" ({p.description})" if p.description else ""
    if p.state == "STOPPED":
        return f"stopped{when}"
    if p.state == "EXITED":
        return f"exited with status {p.exitstatus}{when}"
    if p.state in ("STARTING", "STOPPING") or not p.description:
        return p.state.lower()
    out = p.description  # FATAL, BACKOFF: "Exited too quickly (process log may have details)"
    if p.exitstatus:
        out += f"; exit status {p.exitstatus}"
    if p.spawnerr and p.spawnerr not in out:
        out += f"; {p.spawnerr}"
    return out


@dataclass(frozen=True)
class ProgramStatus:
    """A program as supervisord sees it and, for an outboxd role, its health."""

    program: Program
    role: str | None = None
    process_num: int | None = None
    health: Health | None = None
    health_error: str | None = None  # why there is no health URL (a number with no port)

    @property
    def ready(self) -> bool:
        if self.program.state != RUNNING or self.health_error is not None:
            return False
        return self.health is None or self.health.ready

    @property
    def problems(self) -> list[str]:
        """What keeps it from being ready; empty when it is."""
        if self.program.state != RUNNING:
            return [state_text(self.program)]
        if self.health_error is not None:
            return [self.health_error]
        return self.health.problems if self.health is not None else []

    def as_json(self) -> dict[str, Any]:
        p = self.program
        return {
            "name": p.fullname,
            "group": p.group,
            "program": p.name,
            "state": p.state,
            "description": p.description,
            "pid": p.pid or None,
            "uptime": p.uptime,
            "exitstatus": p.exitstatus,
            "spawnerr": p.spawnerr or None,
            "role": self.role,
            "process": self.process_num,
            "health": self.health.as_json() if self.health is not None else None,
            "ready": self.ready,
            "problems": self.problems,
        }


@dataclass(frozen=True)
class SuiteStatus:
    supervisor: str  # the address asked
    programs: list[ProgramStatus] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(p.ready for p in self.programs)

    @property
    def not_ready(self) -> list[ProgramStatus]:
        return [p for p in self.programs if not p.ready]

    def as_json(self) -> dict[str, Any]:
        return {
            "supervisor": self.supervisor,
            "ready": self.ready,
            "not_ready": [p.program.fullname for p in self.not_ready],
            "programs": [p.as_json() for p in self.programs],
        }


async def survey(
    supervisor: Supervisor, settings: Settings, timeout: float = HEALTH_TIMEOUT
) -> SuiteStatus:
    """Every program's state, and the /healthz of each running outboxd process.
    Raises ``SupervisorUnavailable`` when supervisord does not answer."""
    programs = await asyncio.to_thread(supervisor.programs)
    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(
            *(_status(session, settings, program, timeout) for program in programs)
        )
    return SuiteStatus(str(supervisor.address), list(statuses))


async def _status(
    session: aiohttp.ClientSession, settings: Settings, program: Program, timeout: float
) -> ProgramStatus:
    found = role_of(program)
    if found is None:
        return ProgramStatus(program)
    role, num = found
    try:
        url = health_url(settings, role, num)
    except NoHealthPort as exc:
        return ProgramStatus(program, role, num, health_error=str(exc))
    if program.state != RUNNING:
        return ProgramStatus(program, role, num, Health(url))
    return ProgramStatus(program, role, num, await check_health(session, url, role, num, timeout))
