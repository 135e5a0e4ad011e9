"""``job: command``: run a program, as a site runs its own exports and scripts.

The program and its arguments are a list (``command: [/usr/local/bin/export,
--day, "{{fire_local:%Y-%m-%d}}"]``), run without a shell; each may hold the
run's placeholders (``daemon.jobs.template``). It runs in a process group of
its own, with standard input closed and its standard output and error read
together; the last ``output_lines`` lines are kept in the run's record, whatever
its end.

| it                                   | the run                                   |
|--------------------------------------|-------------------------------------------|
| exits 0                              | ``succeeded``; what it left running in its |
|                                      | group is stopped (TERM, then KILL)        |
| exits with another code, or is       | ``failed`` (retried as the schedule says), |
| killed by a signal                   | the code or signal and its last line said |
| cannot be started (no such program,  | ``failed``                                |
| not executable, no such directory)   |                                           |
| outlasts the schedule's ``timeout``, | its process group is sent SIGTERM, then   |
| is cancelled by an operator, or the  | SIGKILL ``kill_grace`` later; the run is  |
| scheduler stops (drain)              | ``failed``, ``cancelled`` or              |
|                                      | ``interrupted``                           |

Its environment is small, as cron's is: ``PATH``, ``HOME``, ``LANG``, ``LC_*``,
``TZ`` and ``TMPDIR`` of the scheduler's, the variables named in ``pass_env``
(their values read from the scheduler's environment when the run starts: a
secret stays out of the database, where a schedule's settings are kept), those
of ``env``, and what the run is for: ``OUTBOXD_SCHEDULE``, ``OUTBOXD_RUN``,
``OUTBOXD_ATTEMPT``, ``OUTBOXD_FIRE`` (UTC, ISO 8601), ``OUTBOXD_FIRE_LOCAL``
(the schedule's wall clock, with its offset) and ``OUTBOXD_TIMEZONE``.

A process that leaves its group (``setsid``, a daemon) is out of reach; so is
the group of a scheduler killed with SIGKILL (its run's lease runs out and the
run is ``interrupted``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from daemon.domain.fields import Duration, Integer, Line
from daemon.jobs.kind import JobContext, JobFailed, JobKind, JobOptions
from daemon.jobs.template import Templated

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
RESERVED = "OUTBOXD_"  # the variables outboxd gives a run
KEPT = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")  # and every LC_*: the scheduler's, passed on
MAX_LINE = 1000  # characters of one line kept (the rest of it is dropped)
READ = 65536  # bytes read at a time
POLL = 0.05  # seconds between looks at a group being stopped
KILLED = 5.0  # seconds the processes of a group sent SIGKILL get to be gone


def _a_list(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "a list: [program, argument, …] (it runs without a shell: give each argument apart)"
        )
    return value


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("a NUL character cannot be passed to a program")
    return value


Argument = Annotated[Templated, BeforeValidator(_no_nul)]
EnvName = Annotated[str, Field(pattern=ENV_NAME)]


class CommandOptions(JobOptions):
    # the program and its arguments: no shell
    command: Annotated[
        list[Argument], BeforeValidator(_a_list), Field(min_length=1, max_length=1000)
    ]
    env: dict[EnvName, Argument] = Field(default_factory=dict)  # set for the program
    pass_env: list[EnvName] = Field(default_factory=list)  # passed from the scheduler's
    directory: Line | None = None  # its working directory (default: the scheduler's)
    kill_grace: Annotated[Duration, Field(le=300.0)] = 5.0  # SIGTERM to SIGKILL
    output_lines: Annotated[Integer, Field(ge=1, le=1000)] = 20  # the last lines kept

    @field_validator("command")
    @classmethod
    def _program(cls, command: list[str]) -> list[str]:
        if not command[0].strip():
            raise ValueError("the program (the first item) is empty")
        return command

    @field_validator("env", "pass_env")
    @classmethod
    def _not_ours(cls, names: Any) -> Any:
        for name in names:
            if name.upper().startswith(RESERVED):
                raise ValueError(f"{name}: the {RESERVED}* variables are the run's, set by outboxd")
        return names


def environment(
    ctx: JobContext, options: CommandOptions, given: Mapping[str, str]
) -> dict[str, str]:
    """The program's environment, from the scheduler's (``given``)."""
    env = {k: v for k, v in given.items() if k in KEPT or k.startswith("LC_")}
    env.update({name: given[name] for name in options.pass_env if name in given})
    env.update({name: ctx.render(value) for name, value in options.env.items()})
    facts = ctx.facts
    env.update(
        OUTBOXD_SCHEDULE=ctx.schedule,
        OUTBOXD_RUN=str(ctx.run_id),
        OUTBOXD_ATTEMPT=str(ctx.attempt),
        OUTBOXD_FIRE=facts.value("fire", None),
        OUTBOXD_FIRE_LOCAL=facts.value("fire_local", None),
        OUTBOXD_TIMEZONE=str(ctx.zone),
    )
    return env


class Tail:
    """The last lines of a stream, and how many there were; a line longer than
    ``MAX_LINE`` characters is cut there (marked `` …``)."""

    def __init__(self, keep: int) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.count = 0
        self.partial = ""  # the line not ended yet (at most MAX_LINE + 1 characters)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, chunk: bytes, final: bool = False) -> None:
        *whole, rest = self.decoder.decode(chunk, final).split("\n")
        for part in whole:
            self._line(self.partial + part)
            self.partial = ""
        self.partial = (self.partial + rest)[: MAX_LINE + 1]

    def _line(self, line: str) -> None:
        self.count += 1
        self.lines.append(_cut(line.rstrip("\r")))

    def close(self) -> None:
        self.feed(b"", final=True)
        if self.partial:
            self._line(self.partial)
            self.partial = ""

    def shown(self) -> dict[str, Any]:
        tail = list(self.lines) + ([_cut(self.partial)] if self.partial else [])
        return {"lines": self.count + (1 if self.partial else 0), "tail": tail}


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + " …"


async def run(ctx: JobContext, options: CommandOptions) -> dict[str, Any]:
    argv = [ctx.render(arg) for arg in options.command]
    program = argv[0]
    tail = Tail(options.output_lines)
    # the output through a pipe of its own, not the process's: a process is done when
    # it exits, whatever still holds its output open (asyncio's waits for both)
    read_end, write_end = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
            env=environment(ctx, options, os.environ),
            cwd=options.directory,
            start_new_session=True,  # a process group of its own: stopped as one
        )
    except OSError as exc:
        os.close(read_end)
        where = f" in {options.directory}" if options.directory else ""
        raise JobFailed(f"cannot run {program}{where}: {exc.strerror or exc}") from None
    finally:
        os.close(write_end)
    shown = {"command": program, "pid": proc.pid}
    ctx.progress.update(shown, **tail.shown())
    stream = asyncio.StreamReader(limit=2 * READ)
    pipe, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_end, "rb", buffering=0)
    )
    reader = asyncio.create_task(_read(stream, tail, ctx, shown), name=f"read {proc.pid}")
    try:
        code = await proc.wait()
    except BaseException:  # cancelled: the schedule's timeout, an operator, the drain
        await _stop_group(proc, options.kill_grace)
        await _drain_reader(reader, pipe, tail, ctx, shown)
        raise
    leftovers = await _stop_group(proc, options.kill_grace)
    await _drain_reader(reader, pipe, tail, ctx, shown)
    output: dict[str, Any] = {**shown, "exit": code, **tail.shown()}
    if leftovers:
        output["note"] = "what it left running in its process group was stopped"
    ctx.progress.update(output)
    if code == 0:
        return output
    last = tail.lines[-1] if tail.lines else "(no output)"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        output["signal"] = name
        raise JobFailed(f"{program} was killed by {name}: {last}", output)
    raise JobFailed(f"{program} exited with {code}: {last}", output)


async def _read(
    stream: asyncio.StreamReader, tail: Tail, ctx: JobContext, shown: dict[str, Any]
) -> None:
    while chunk := await stream.read(READ):
        tail.feed(chunk)
        ctx.progress.update(shown, **tail.shown())
    tail.close()
    ctx.progress.update(shown, **tail.shown())


async def _drain_reader(
    reader: asyncio.Task[None],
    pipe: asyncio.BaseTransport,
    tail: Tail,
    ctx: JobContext,
    shown: dict[str, Any],
) -> None:
    """The output to its end: every writer is gone once the group is (one that
    left the group may hold it open: it is given a second)."""
    try:
        await asyncio.wait_for(asyncio.shield(reader), timeout=1.0)
    except (TimeoutError, asyncio.CancelledError):
        reader.cancel()
    finally:
        pipe.close()
    ctx.progress.update(shown, **tail.shown())


def _signal(group: int, sig: signal.Signals) -> bool:
    """Send a signal to a process group; False when it has no process left."""
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _alive(group: int) -> bool:
    """Whether a process of the group still runs (a zombie does not: its parent,
    or init, has yet to reap it)."""
    proc = Path("/proc")
    if not proc.is_dir():  # no /proc: ask the kernel, zombies and all
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[-1].split()  # after the command's name: state, ppid, pgrp
        if len(fields) > 2 and fields[2] == str(group) and fields[0] not in ("Z", "X"):
            return True
    return False


async def _stop_group(proc: asyncio.subprocess.Process, grace: float) -> bool:
    """Stop every process of the program's group: SIGTERM, then SIGKILL after
    ``grace`` seconds, and wait (a little) for them to be gone. Answers whether
    there was any to stop. Cancelled while waiting, it kills at once."""
    group = proc.pid  # start_new_session: the group's id is the program's pid
    if not _signal(group, signal.SIGTERM):
        if proc.returncode is None:
            await proc.wait()
        return False
    loop = asyncio.get_running_loop()
    try:
        await _gone(proc, group, loop.time() + grace)
    finally:
        if _signal(group, signal.SIGKILL):
            if proc.returncode is None:
                await proc.wait()
            await _gone(proc, group, loop.time() + KILLED)
    return True


async def _gone(proc: asyncio.subprocess.Process, group: int, deadline: float) -> bool:
    """Wait until the program has exited and its group has no process left, or
    the deadline; whether they are gone."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), POLL)
        elif not _alive(group):
            return True
        else:
            await asyncio.sleep(POLL)
    return proc.returncode is not None and not _alive(group)


def describe(options: CommandOptions) -> str:
    shown = " ".join(options.command)
    return shown if len(shown) <= 80 else shown[:79] + "…"


KIND = JobKind("command", CommandOptions, run, describe)
