"""``job: command`` as the scheduler runs it (a ``JobContext``, its run under the
schedule's timeout), with real programs: exit 0 and its output kept, a failure
with its last line, the environment a run is given, a timeout or a cancel
stopping the whole process group (a grandchild too), a program that ignores
SIGTERM killed after ``kill_grace``, what it leaves behind stopped."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.jobs.command import KIND, CommandOptions
from daemon.jobs.kind import JobContext, JobFailed
from tests.support.processes import gone
from tests.support.waiting import eventually

FIRE = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
JAKARTA = ZoneInfo("Asia/Jakarta")
SH = shutil.which("sh") or "/bin/sh"

pytestmark = pytest.mark.timeout(60)


def context(attempt: int = 1) -> JobContext:
    async def no_notify(targets: list[str], subject: str, text: str) -> list[str]:
        return []

    return JobContext(
        "nightly",
        41,
        FIRE,
        attempt,
        JAKARTA,
        "Asia/Jakarta",
        {},
        None,
        no_notify,  # type: ignore[arg-type]
    )


def options(script: str, **more: Any) -> CommandOptions:
    return CommandOptions.model_validate({"command": [SH, "-c", script, "job"], **more})


async def run(ctx: JobContext, opts: CommandOptions, timeout: float = 30.0) -> dict[str, Any]:
    """As the scheduler runs a job: under the schedule's timeout."""
    return await asyncio.wait_for(KIND.run(ctx, opts), timeout)


def pids_in(ctx: JobContext) -> list[int]:
    """The process ids a script printed as ``pid N`` lines."""
    return [
        int(line.split()[1]) for line in ctx.progress.get("tail", []) if line.startswith("pid ")
    ]


async def test_exit_0_succeeds_with_its_last_lines_kept():
    ctx = context()
    script = 'for i in $(seq 1 100); do echo "line $i"; done; echo "to stderr" >&2'
    output = await run(ctx, options(script, output_lines=5))
    assert output["exit"] == 0 and output["lines"] == 101
    assert output["tail"] == ["line 97", "line 98", "line 99", "line 100", "to stderr"]
    assert output["command"] == SH and "note" not in output


async def test_the_run_is_in_its_environment_and_arguments():
    ctx = context(attempt=2)
    opts = CommandOptions.model_validate({
        "command": [SH, "-c", 'echo "$1|$OUTBOXD_SCHEDULE|$OUTBOXD_RUN|$OUTBOXD_ATTEMPT"; '
                    'echo "$OUTBOXD_FIRE|$OUTBOXD_FIRE_LOCAL|$OUTBOXD_TIMEZONE"; '
                    'echo "$MODE|$PASSED|${SECRET_NOT_PASSED:-unset}|$PWD"', "job",
                    "--day={{fire_local:%Y-%m-%d}}"],
        "env": {"MODE": "full-{{attempt}}"},
        "pass_env": ["PASSED"],
        "directory": "/tmp",
    })  # fmt: skip
    os.environ["PASSED"], os.environ["SECRET_NOT_PASSED"] = "yes", "leak"
    try:
        output = await run(ctx, opts)
    finally:
        del os.environ["PASSED"], os.environ["SECRET_NOT_PASSED"]
    assert output["tail"] == [
        "--day=2026-03-01|nightly|41|2",
        "2026-03-01T05:00:00Z|2026-03-01T12:00:00+07:00|Asia/Jakarta",
        "full-2|yes|unset|/tmp",
    ]


async def test_another_exit_code_fails_with_its_last_line_and_output():
    ctx = context()
    with pytest.raises(JobFailed, match=r"exited with 3: no such table: visits") as failed:
        await run(ctx, options('echo "reading"; echo "no such table: visits" >&2; exit 3'))
    assert failed.value.output is not None
    assert failed.value.output["exit"] == 3
    assert failed.value.output["tail"] == ["reading", "no such table: visits"]


async def test_a_program_killed_by_a_signal_fails_saying_which():
    with pytest.raises(JobFailed, match="was killed by SIGKILL") as failed:
        await run(context(), options('echo "about to die"; kill -9 $$'))
    assert failed.value.output and failed.value.output["signal"] == "SIGKILL"


async def test_a_program_that_cannot_start_fails_saying_why(tmp_path: Path):
    ctx = context()
    missing = CommandOptions.model_validate({"command": [str(tmp_path / "nothing")]})
    with pytest.raises(JobFailed, match=r"cannot run .*nothing: No such file"):
        await run(ctx, missing)
    not_there = options("true", directory=str(tmp_path / "gone"))
    with pytest.raises(JobFailed, match=r"cannot run .* in .*gone"):
        await run(ctx, not_there)


# a program that starts a grandchild (a process of its own, in the same group),
# says both process ids, then waits
FAMILY = 'sleep 300 & echo "pid $!"; echo "pid $$"; wait'


async def test_a_timeout_kills_the_process_group_a_grandchild_too():
    ctx = context()
    task = asyncio.ensure_future(run(ctx, options(FAMILY), timeout=60))
    pids = await eventually(lambda: len(pids_in(ctx)) == 2 and pids_in(ctx), "both pids")
    task.cancel()  # what the schedule's timeout does (asyncio.wait_for cancels the job)
    with pytest.raises(asyncio.CancelledError):
        await task
    for pid in pids:
        assert gone(pid), f"process {pid} still runs"
    assert ctx.progress["tail"][:2] == [f"pid {pids[0]}", f"pid {pids[1]}"]  # kept


async def test_the_schedules_timeout_stops_it_and_its_output_is_kept():
    ctx = context()
    with pytest.raises(TimeoutError):
        await run(ctx, options(FAMILY + "; echo never"), timeout=1.0)
    pids = pids_in(ctx)
    assert len(pids) == 2 and all(gone(pid) for pid in pids)
    assert "never" not in ctx.progress["tail"]


async def test_a_program_ignoring_sigterm_is_killed_after_its_grace():
    ctx = context()
    stubborn = 'trap \'\' TERM; sleep 300 & echo "pid $!"; echo "pid $$"; while :; do sleep 1; done'
    task = asyncio.ensure_future(run(ctx, options(stubborn, kill_grace="0.5s")))
    pids = await eventually(lambda: len(pids_in(ctx)) == 2 and pids_in(ctx), "both pids")
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    took = asyncio.get_running_loop().time() - started
    assert all(gone(pid) for pid in pids)  # killed: TERM alone would never end them
    # the grace was waited for, and it was the one given (0.5 s), not the default
    # (5 s): only the time can tell the two apart, and a loaded machine stays far
    # below the bound
    assert 0.4 <= took < 5.0, took


async def test_what_it_leaves_running_is_stopped_when_it_exits():
    ctx = context()
    output = await run(ctx, options('sleep 300 & echo "pid $!"; echo done'))
    [pid] = pids_in(ctx)
    assert gone(pid)
    assert output["exit"] == 0 and output["tail"][-1] == "done"
    assert output["note"] == "what it left running in its process group was stopped"


async def test_long_lines_are_cut_and_output_without_a_last_newline_kept():
    output = await run(context(), options("head -c 5000 /dev/zero | tr '\\0' x; echo; printf end"))
    assert output["lines"] == 2
    long, last = output["tail"]
    assert long.startswith("xxx") and long.endswith(" …") and len(long) <= 1002
    assert last == "end"


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"command": "/usr/bin/backup --all"}, "a list: [program, argument, …]"),
        ({"command": []}, "at least 1 item"),
        ({"command": [" "]}, "the program (the first item) is empty"),
        ({"command": ["x", "{{day}}"]}, "unknown placeholder '{{day}}'"),
        ({"command": ["x"], "env": {"OUTBOXD_FIRE": "1"}}, "are the run's, set by outboxd"),
        ({"command": ["x"], "env": {"1BAD": "1"}}, "should match pattern"),
        ({"command": ["x"], "pass_env": ["outboxd_run"]}, "are the run's"),
        ({"command": ["x\0y"]}, "a NUL character"),
        ({"command": ["x"], "output_lines": 0}, "greater than or equal to 1"),
    ],
)
def test_options_refused(given: dict[str, Any], problem: str):
    with pytest.raises(ValueError, match=re.escape(problem)):
        CommandOptions.model_validate(given)
