"""``outboxd status``: every program supervisord runs, and the /healthz of outboxd's.

Exit codes: 0 when every program is RUNNING and every health check is ready; 1
when one is not (each named, with why); 69 when supervisord does not answer.
``--wait N`` asks again every half second until all are ready, a program is
FATAL (supervisord has given up on it), or N seconds have passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from daemon.cli.common import settings_of
from daemon.cli.errors import EX_UNAVAILABLE, EX_USAGE, CliError
from daemon.config.settings import Settings
from daemon.operator.summaries import printable
from daemon.suite.readiness import ProgramStatus, SuiteStatus, survey
from daemon.suite.supervisor import (
    FATAL,
    Supervisor,
    SupervisorError,
    SupervisorUnavailable,
    last_lines,
    supervisor_address,
)

EX_NOT_READY = 1
POLL = 0.5  # seconds between two looks with --wait
MAX_WAIT = 24 * 3600
MAX_TAIL = 1000
BYTES_PER_LINE = 400  # how much log to ask supervisord for per line wanted


def cmd_status(args: argparse.Namespace) -> int:
    if not 0 <= args.wait <= MAX_WAIT:
        raise CliError(f"--wait: {args.wait:g} is not 0 to {MAX_WAIT} seconds", EX_USAGE)
    if not 0 <= args.tail <= MAX_TAIL:
        raise CliError(f"--tail: {args.tail} is not 0 to {MAX_TAIL} lines", EX_USAGE)
    try:
        address = supervisor_address(args.supervisor)
    except ValueError as exc:
        raise CliError(f"--supervisor: {exc}", EX_USAGE) from None
    settings = settings_of(args)
    supervisor = Supervisor(address)
    status = asyncio.run(_look(supervisor, settings, args.wait))
    if args.json:
        print(json.dumps(status.as_json(), indent=2))
    else:
        print("\n".join(status_table(status)))
        if args.tail:
            for line in _tails(supervisor, status.not_ready, args.tail):
                print(line)
    return 0 if status.ready else EX_NOT_READY


async def _look(supervisor: Supervisor, settings: Settings, wait: float) -> SuiteStatus:
    """The suite's status, waited for as ``--wait`` says."""
    deadline = time.monotonic() + wait
    while True:
        try:
            status = await survey(supervisor, settings)
        except (SupervisorUnavailable, SupervisorError) as exc:  # not up, or shutting down
            if time.monotonic() >= deadline:
                raise CliError(str(exc), EX_UNAVAILABLE) from None
        else:
            given_up = any(p.program.state == FATAL for p in status.not_ready)
            if status.ready or given_up or time.monotonic() >= deadline:
                return status
        await asyncio.sleep(min(POLL, max(0.0, deadline - time.monotonic())))


def _uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _health(entry: ProgramStatus) -> str:
    if entry.program.state != "RUNNING":
        return entry.problems[0] if entry.problems else "-"
    if entry.role is None:
        return "-"
    if entry.ready:
        return "ready"
    return "not ready: " + "; ".join(entry.problems)


def status_table(status: SuiteStatus) -> list[str]:
    """One line per program, then the verdict: ready, or what is not and why."""
    rows = [("PROGRAM", "STATE", "PID", "UPTIME", "HEALTH")]
    for entry in status.programs:
        p = entry.program
        rows.append((p.fullname, p.state, str(p.pid or "-"), _uptime(p.uptime), _health(entry)))
    widths = [max(len(printable(row[i])) for row in rows) for i in range(4)]
    lines = [
        "  ".join(printable(cell).ljust(w) for cell, w in zip(row[:4], widths, strict=True))
        + "  "
        + printable(row[4])
        for row in rows
    ]
    if not status.programs:
        lines.append(f"not ready: supervisord at {status.supervisor} runs no programs")
    elif status.ready:
        checks = sum(1 for p in status.programs if p.health is not None)
        lines.append(f"ready: {len(status.programs)} programs running, {checks} healthy")
    else:
        named = ", ".join(f"{p.program.fullname} ({p.program.state})" for p in status.not_ready)
        lines.append(printable(f"not ready: {named}"))
    return lines


def _tails(supervisor: Supervisor, entries: list[ProgramStatus], count: int) -> list[str]:
    """The last ``count`` log lines of each program named."""
    out: list[str] = []
    for entry in entries:
        name = entry.program.fullname
        where = entry.program.logfile or "its log"
        try:
            text = supervisor.tail(name, count * BYTES_PER_LINE)
        except (SupervisorError, SupervisorUnavailable) as exc:
            out.append(printable(f"--- {name}: no log ({exc}) ---"))
            continue
        lines = last_lines(text, count)
        out.append(printable(f"--- {name}: the last {len(lines)} lines of {where} ---"))
        out += [printable(line) for line in lines]
    return out
