"""Benchmark of the scheduler end to end: two scheduler processes sharing a real database,
many ``every: 1s`` schedules, the fire ledger read afterwards.

Every run starts from an empty, freshly migrated database (a SQLite file in a temp dir, or
the PostgreSQL schema ``outboxd_bench_scheduler``, dropped afterwards), starts two
schedulers at once, as supervisord would (``sys.executable -m daemon run scheduler -c FILE
--process-num N``, health and metrics on free ports), lets them run ``--seconds`` and
stops them with SIGTERM (then SIGKILL), however the run ends. The ``--schedules``
schedules (default 100) each fire every second and run the ``http`` job: a POST to a tiny
aiohttp receiver in the bench process on 127.0.0.1 (it answers 200 and counts the calls).
Measured over a window that leaves out a warm-up after both schedulers answered /healthz
and a tail before the stop, per backend:

- fires/s: runs started (``started_at``) in the window / its length (ideal: --schedules);
- lateness: ``started_at - fire_time`` (when the claim's transaction ran) p50/p99/max, ms,
  of the fires in the window;
- duplicates: first attempts beyond one per (schedule, fire time) in the ledger, cron
  runs beyond distinct cron fires, and runs executed twice (a run id in both processes'
  logs, or receiver calls beyond the runs that made them);
- missed: fires on the 1 s grid of the window with no ledger row although a later fire of
  their schedule has one (a hole), plus rows ``missed``; apart from them: ``skipped``
  (a row, not run: the ``overlap: skip`` policy found the schedule's last run still
  ``running``) and unclaimed (no row and no later one: still waiting for their claim at
  the stop, a backlog longer than the tail); the notes also count holes in the whole
  ledger, warm-up included;
- the split of the fires between the two processes: the ledger clears ``lease_owner`` when
  a run ends, so it is read from the processes' JSON logs (``run succeeded``, with the run
  id), and cross-checked with their /metrics (``outboxd_schedule_fires_total``);
- CPU (from /proc) of the schedulers, of the PostgreSQL server and of the bench, over the
  window: cores busy and CPU microseconds per fire.

Timing is printed, never asserted. With ``--repeat N`` each backend runs N times and the
table shows the medians (each run's figures on stderr).

    .venv/bin/python ops/bench/scheduler.py                    # both backends, 60 s each
    .venv/bin/python ops/bench/scheduler.py --repeat 3         # medians of 3 runs
    .venv/bin/python ops/bench/scheduler.py --backend sqlite --seconds 20 --schedules 20
    .venv/bin/python ops/bench/scheduler.py --keep /tmp/sched   # keep the processes' logs
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import peewee
from aiohttp import web
from lib import cli, report
from lib.backends import (
    DEFAULT_PG,
    Backend,
    PostgresBackend,
    StoreOnThread,
    locations,
    open_backends,
    scratch,
    utcnow,
)
from lib.processes import (
    Child,
    ChildExited,
    CpuWatch,
    Dispatcher,
    StartupError,
    free_ports,
    http_get,
    retry_startup,
    stop_all,
)
from lib.report import first_line, join, log, median, percentile

from daemon.domain.statuses import COALESCED, MISSED, SKIPPED
from daemon.store.models import read_timestamp
from daemon.store.sync import Store

PG_SCHEMA = "outboxd_bench_scheduler"
PROCESSES = 2
WARMUP = 5.0  # seconds after both schedulers answered /healthz, not counted
TAIL = 2.0  # seconds before the stop, not counted
DRAIN_TIMEOUT = 5.0
STOP_TIMEOUT = DRAIN_TIMEOUT + 5
POLL = 0.5  # seconds between the bench's looks at its processes
FIRES = "outboxd_schedule_fires_total"
RAN = ("succeeded", "failed", "interrupted")  # statuses of a run that executed its job


# --- the processes and the receiver ---------------------------------------------------------


class SchedulerProcess(Dispatcher):
    """``python -m daemon run scheduler -c CONFIG --process-num NUM``; health and metrics
    on ``base_port + num`` (a dispatcher's readiness and /metrics, another role)."""

    def __init__(self, config: Path, num: int, base_port: int, workdir: Path) -> None:
        argv = [sys.executable, "-m", "daemon", "run", "scheduler", "-c", str(config)]
        Child.__init__(self, f"scheduler-{num}", [*argv, "--process-num", str(num)], workdir)
        self.num = num
        self.port = base_port + num
        self.unready = f"{self.name} did not answer /healthz"

    async def health(self) -> dict[str, Any]:
        """/healthz; a busy event loop may not answer within http_get's 2 s."""
        try:
            status, text = await asyncio.to_thread(http_get, self.port, "/healthz")
        except (OSError, http.client.HTTPException) as exc:
            return {"status": f"no answer ({first_line(exc)})"}
        try:
            body = json.loads(text)
        except ValueError:
            body = {"status": text[:80]}
        return {"http": status, **body}

    async def metrics_text(self) -> str:
        """/metrics, or nothing when it did not answer."""
        try:
            return await self.metrics()
        except (OSError, http.client.HTTPException):
            return ""

    def run_ids(self) -> list[int]:
        """The runs this process finished, from its JSON log (``run <status>``)."""
        ids = []
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        for line in lines:
            if not line.startswith("{") or '"msg": "run ' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg", "").removeprefix("run ") in RAN and "run" in entry:
                ids.append(int(entry["run"]))
        return ids


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (over every
    schedule, say)."""
    want = {f'{k}="{v}"' for k, v in labels.items()}
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, rest = sample.partition("{")
        if metric_name == name and want <= set(rest.rstrip("}").split(",")):
            total += float(value)
    return total


class Receiver:
    """The http job's peer: answers every POST 200, counts the calls per path."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.calls[request.path] += 1
        return web.Response(text="ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.port}/tick/{number}"


def write_config(
    path: Path, backend: Backend, receiver: Receiver, base_port: int, count: int
) -> Path:
    schedules = {
        f"tick-{i:04d}": {
            "every": "1s",
            "job": "http",
            "options": {"url": receiver.url(i), "method": "POST", "timeout": "5s"},
        }
        for i in range(count)
    }
    config = {
        "database": backend.url,
        "schedules": schedules,
        "roles": {"scheduler": {"base_port": base_port, "drain_timeout": f"{DRAIN_TIMEOUT:g}s"}},
        "logging": {"level": "INFO", "format": "json"},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


# --- one run ---------------------------------------------------------------------------------


# a ledger row: (id, schedule, fire time, started at, status, trigger, attempt)
Row = tuple[int, str, datetime, datetime | None, str, str, int]


@dataclass
class Ledger:
    rows: list[Row]


def read_ledger(store: Store) -> Ledger:
    JobRun, Schedule = store.models.JobRun, store.models.Schedule
    query = (
        JobRun.select(
            JobRun.id,
            Schedule.name,
            JobRun.fire_time,
            JobRun.started_at,
            JobRun.status,
            JobRun.trigger,
            JobRun.attempt,
        )
        .join(Schedule)
        .order_by(JobRun.id)
        .tuples()
    )
    rows: list[Row] = []
    for run_id, name, fire, started, status, trigger, attempt in query:
        rows.append(
            (
                run_id,
                name,
                read_timestamp(fire),
                None if started is None else read_timestamp(started),
                status,
                trigger,
                attempt,
            )
        )
    return Ledger(rows)


def duplicate_firsts(store: Store) -> int:
    """First attempts beyond one per (schedule, fire time), counted by the database."""
    JobRun = store.models.JobRun
    per_fire = (
        JobRun.select(peewee.fn.COUNT(JobRun.id).alias("n"))
        .where(JobRun.attempt == 1)
        .group_by(JobRun.schedule_id, JobRun.fire_time)
        .having(peewee.fn.COUNT(JobRun.id) > 1)
        .tuples()
    )
    return sum(n - 1 for (n,) in per_fire)


@dataclass
class Result:
    """One run's figures."""

    fires_per_s: float
    p50: float  # lateness, ms
    p99: float
    max: float
    duplicates: int
    missed: int  # fires of the window with no row before a later fire's row, or ``missed``
    skipped: int  # fires of the window not run: the overlap policy found the last one running
    unclaimed: int  # fires of the window still unclaimed at the stop (after the last row)
    window: float  # seconds counted
    split: list[int]  # runs in the window executed by each process (from their logs)
    notes: list[str] = field(default_factory=list)


def whole_second_after(at: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(at.timestamp()), UTC)


def whole_second_before(at: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(at.timestamp()), UTC)


async def wait_until(at: datetime, procs: Sequence[Child]) -> None:
    """Sleep until the wall-clock instant ``at``, raising if a process ends meanwhile."""
    while True:
        for proc in procs:
            proc.check()
        left = (at - utcnow()).total_seconds()
        if left <= 0:
            return
        await asyncio.sleep(min(POLL, left))


def cpu_groups(procs: Sequence[SchedulerProcess], backend: Backend) -> CpuWatch:
    proc = Path("/proc")
    groups = {"schedulers": [proc / str(p.pid) / "stat" for p in procs]}
    servers = backend.server_pids()
    if servers:
        groups["postgres"] = [proc / str(pid) / "stat" for pid in servers]
    groups["bench (receiver)"] = [proc / str(os.getpid()) / "stat"]
    return CpuWatch(groups)


async def scheduler_run(backend: Backend, workdir: Path, seconds: float, schedules: int) -> Result:
    await asyncio.to_thread(backend.reset)
    rundir = workdir / f"{backend.name}-{time.monotonic_ns()}"
    rundir.mkdir()
    procs: list[SchedulerProcess] = []
    async with Receiver() as receiver:
        try:
            base = free_ports(PROCESSES)
            config = write_config(rundir / "scheduler.yaml", backend, receiver, base, schedules)
            procs = [SchedulerProcess(config, n, base, rundir) for n in range(PROCESSES)]
            try:
                await asyncio.gather(*(p.ready() for p in procs))
            except ChildExited as exc:
                raise StartupError(str(exc)) from exc
            up = utcnow()  # both answer /healthz
            stop_at = up + timedelta(seconds=seconds)
            start = whole_second_after(up + timedelta(seconds=WARMUP))
            end = whole_second_before(stop_at - timedelta(seconds=TAIL))  # exclusive
            if end <= start:
                raise ValueError(f"--seconds {seconds:g} leaves no window after the warm-up")
            await wait_until(start, procs)
            watch = await asyncio.to_thread(cpu_groups, procs, backend)
            watch.start()
            await wait_until(end, procs)
            watch.stop()
            await wait_until(stop_at, procs)
            health = await asyncio.gather(*(p.health() for p in procs))
            texts = await asyncio.gather(*(p.metrics_text() for p in procs))
        finally:
            await stop_all(procs, STOP_TIMEOUT)
        codes = [p.popen.returncode for p in procs]
        calls = sum(receiver.calls.values())
    store = StoreOnThread(backend.bench_url)
    try:
        ledger = await store.call(read_ledger)
        db_duplicates = await store.call(duplicate_firsts)
    finally:
        await store.close()
    return figures(
        ledger, db_duplicates, procs, texts, health, codes, calls, start, end, schedules, watch
    )


def figures(
    ledger: Ledger,
    db_duplicates: int,
    procs: Sequence[SchedulerProcess],
    texts: Sequence[str],
    health: Sequence[dict[str, Any]],
    codes: Sequence[int | None],
    calls: int,
    start: datetime,
    end: datetime,
    schedules: int,
    watch: CpuWatch,
) -> Result:
    window = (end - start).total_seconds()
    rows = ledger.rows
    in_window = [r for r in rows if start <= r[2] < end]
    firsts = [r for r in in_window if r[6] == 1]
    # fires/s: runs started in the window, by their started_at (whatever their fire time)
    started = [r for r in rows if r[3] is not None and start <= r[3] < end]
    fires_per_s = len(started) / window
    lateness = [(r[3] - r[2]).total_seconds() * 1000 for r in firsts if r[3] is not None]
    # duplicates: the ledger's, the cron fires', and runs executed twice
    cron = [(r[1], r[2]) for r in rows if r[5] == "cron" and r[6] == 1]
    cron_twice = len(cron) - len(set(cron))
    logged = [p.run_ids() for p in procs]
    seen = Counter(run_id for ids in logged for run_id in ids)
    executed_twice = sum(n - 1 for n in seen.values() if n > 1)
    executed = sum(1 for r in rows if r[4] in RAN)
    extra_calls = max(0, calls - executed)
    duplicates = db_duplicates + cron_twice + executed_twice + extra_calls
    # missed: holes in the window's grid (no row, a later one), and rows recorded missed
    grid = {
        (f"tick-{i:04d}", start + timedelta(seconds=s))
        for i in range(schedules)
        for s in range(int(window))
    }
    have = {(r[1], r[2]) for r in firsts}
    latest: dict[str, datetime] = {}
    for r in rows:
        if r[6] == 1 and (r[1] not in latest or r[2] > latest[r[1]]):
            latest[r[1]] = r[2]
    no_row = sorted(grid - have)
    holes = [h for h in no_row if h[0] in latest and latest[h[0]] > h[1]]
    statuses = Counter(r[4] for r in firsts)
    missed = len(holes) + statuses[MISSED]
    unclaimed = len(no_row) - len(holes)
    # the split: runs of the window each process executed
    window_ids = {r[0] for r in in_window}
    split = [sum(1 for i in ids if i in window_ids) for ids in logged]
    started_metric = [metric_sum(t, FIRES, result="started") for t in texts]
    taken_metric = [metric_sum(t, FIRES, result="taken") for t in texts]
    lat_sum = sum(metric_sum(t, "outboxd_schedule_lateness_seconds_sum") for t in texts)
    lat_count = sum(metric_sum(t, "outboxd_schedule_lateness_seconds_count") for t in texts)
    triggers = Counter(r[5] for r in firsts)
    all_missed = sum(1 for r in rows if r[4] == MISSED)
    notes = [
        f"{len(firsts):,} fires in {window:.0f} s x {schedules} schedules "
        f"(grid {len(grid):,}); statuses "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items())),
        "triggers " + ", ".join(f"{k} {v:,}" for k, v in sorted(triggers.items())),
        f"missed: {len(holes)} without a row (a later fire has one) + {statuses[MISSED]} "
        "recorded missed"
        + (f" ({all_missed} missed rows in the whole ledger)" if all_missed else ""),
        unclaimed_note(no_row, holes, end),
        ledger_holes(rows),
        f"skipped {statuses[SKIPPED]}, coalesced {statuses[COALESCED]}"
        if statuses[SKIPPED] or statuses[COALESCED]
        else "",
        f"duplicates: ledger {db_duplicates}, cron {cron_twice}, run ids in two logs "
        f"{executed_twice}, receiver calls {calls:,} for {executed:,} executed runs",
        f"retries (attempt > 1) {sum(1 for r in rows if r[6] > 1)}",
        "per process (whole run, /metrics before the stop): started "
        + "/".join(f"{s:,.0f}" for s in started_metric)
        + ", taken "
        + "/".join(f"{s:,.0f}" for s in taken_metric),
        f"claim lateness mean (metrics) {lat_sum / max(1, lat_count) * 1000:.1f} ms",
        "healthz " + "/".join(str(h.get("status")) for h in health),
        "" if all(c == 0 for c in codes) else f"exit codes {codes}",
        watch.note(max(1, len(started))).replace("us/msg", "us/fire"),
    ]
    return Result(
        fires_per_s,
        median(lateness) if lateness else math.nan,
        percentile(lateness, 99) if lateness else math.nan,
        max(lateness) if lateness else math.nan,
        duplicates,
        missed,
        statuses[SKIPPED],
        unclaimed,
        window,
        split,
        [n for n in notes if n],
    )


def unclaimed_note(
    no_row: Sequence[tuple[str, datetime]], holes: Sequence[tuple[str, datetime]], end: datetime
) -> str:
    """Fires of the window without a row and no later fire of their schedule in the
    ledger: still waiting for their claim when the schedulers were stopped (a backlog)."""
    waiting = sorted({h[1] for h in set(no_row) - set(holes)})
    if not waiting:
        return ""
    first, last = ((t - end).total_seconds() for t in (waiting[0], waiting[-1]))
    return (
        f"unclaimed at the stop: {len(no_row) - len(holes)} fires, due {first:+.0f} s .. "
        f"{last:+.0f} s from the window's end (a backlog: later than the {TAIL:g} s tail)"
    )


def ledger_holes(rows: Sequence[Row]) -> str:
    """Fires with no row between a schedule's first and last row, warm-up and tail
    included: a fire lost at a scheduler's start shows here."""
    fires: dict[str, set[datetime]] = {}
    for r in rows:
        if r[6] == 1:
            fires.setdefault(r[1], set()).add(r[2])
    lost: list[datetime] = []
    for times in fires.values():
        first, last = min(times), max(times)
        span = int((last - first).total_seconds())
        lost += [
            first + timedelta(seconds=s)
            for s in range(span + 1)
            if first + timedelta(seconds=s) not in times
        ]
    if not lost:
        return "whole ledger: no holes"
    return (
        f"whole ledger: {len(lost)} holes (fires with no row between a schedule's first and "
        f"last), at {', '.join(sorted({t.strftime('%H:%M:%S') for t in lost})[:10])}"
    )


# --- the table ---------------------------------------------------------------------------------


@dataclass
class Figure:
    backend: str
    runs: int
    fires_per_s: float
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    duplicates: float
    missed: float
    skipped: float
    unclaimed: float
    split: str
    note: str = ""
    each: list[dict[str, Any]] = field(default_factory=list)


def summarize(backend: str, results: Sequence[Result]) -> Figure:
    """The medians of a backend's runs, each run's figures kept."""
    med = median
    each = [
        {
            "fires_per_s": r.fires_per_s,
            "p50": r.p50,
            "p99": r.p99,
            "max": r.max,
            "duplicates": r.duplicates,
            "missed": r.missed,
            "skipped": r.skipped,
            "unclaimed": r.unclaimed,
            "split": r.split,
            "notes": r.notes,
        }
        for r in results
    ]
    return Figure(
        backend,
        len(results),
        med([r.fires_per_s for r in results]),
        med([r.p50 for r in results]),
        med([r.p99 for r in results]),
        med([r.max for r in results]),
        med([r.duplicates for r in results]),
        med([r.missed for r in results]),
        med([r.skipped for r in results]),
        med([r.unclaimed for r in results]),
        " ".join("/".join(f"{n:,}" for n in r.split) for r in results),
        join(*results[len(results) // 2].notes) if len(results) == 1 else "",
        each,
    )


COLUMNS = (  # (heading, width, Figure field or run key, format)
    ("fires/s", 8, "fires_per_s", ".2f"),
    ("late p50", 9, "lateness_p50_ms", ".1f"),
    ("p99", 8, "lateness_p99_ms", ".1f"),
    ("max", 8, "lateness_max_ms", ".1f"),
    ("dup", 4, "duplicates", ".0f"),
    ("missed", 6, "missed", ".0f"),
    ("skipped", 7, "skipped", ".0f"),
    ("unclaimed", 9, "unclaimed", ".0f"),
)
RUN_KEYS = {"lateness_p50_ms": "p50", "lateness_p99_ms": "p99", "lateness_max_ms": "max"}


def format_table(facts: dict[str, str], setup: dict[str, str], figures: Sequence[Figure]) -> str:
    lines = report.heading("outboxd scheduler benchmark", facts, setup)
    header = f"{'backend':<8} {'runs':>4} " + " ".join(f"{h:>{w}}" for h, w, _, _ in COLUMNS)
    lines += ["", header + "  split (per run)", " " * 14 + "(lateness in ms; medians of the runs)"]
    for f in figures:
        if f.runs == 0:
            lines.append(f"{f.backend:<8} not run: {f.note}")
            continue
        values = " ".join(f"{getattr(f, key):>{w}{fmt}}" for _, w, key, fmt in COLUMNS)
        lines.append(f"{f.backend:<8} {f.runs:>4} {values}  {f.split}")
        if f.runs > 1:
            per_run = [
                f"{h} " + " ".join(f"{e[RUN_KEYS.get(key, key)]:{fmt}}" for e in f.each)
                for h, _, key, fmt in COLUMNS
            ]
            lines.append("         runs: " + "; ".join(per_run))
        for i, e in enumerate(f.each, 1):
            lines.append(f"         run {i}: " + join(*e["notes"]))
    return "\n".join(lines)


def absent(backend: str, why: str) -> Figure:
    """A backend that was not measured (the reason in the note)."""
    return Figure(backend, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", why)


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.new_parser(__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL URL (default {DEFAULT_PG})")
    parser.add_argument("--seconds", type=float, default=60.0, help="per run (default 60)")
    parser.add_argument("--schedules", type=int, default=100, help="every: 1s each (default 100)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per backend, medians shown")
    parser.add_argument("--keep", type=Path, help="keep the processes' logs in this directory")
    cli.add_json_option(parser)
    return parser.parse_args(argv)


async def bench(backends: Sequence[Backend], tmp: Path, args: argparse.Namespace) -> list[Figure]:
    figures = []
    for backend in backends:
        results = []
        try:
            for i in range(max(1, args.repeat)):
                log(f"{backend.name}: run {i + 1}, {args.schedules} schedules, {args.seconds:g} s")
                result = await retry_startup(
                    f"{backend.name} run {i + 1}",
                    functools.partial(scheduler_run, backend, tmp, args.seconds, args.schedules),
                )
                log(
                    f"  {result.fires_per_s:.2f} fires/s, lateness p50 {result.p50:.1f} "
                    f"p99 {result.p99:.1f} max {result.max:.1f} ms, duplicates "
                    f"{result.duplicates}, missed {result.missed}, skipped {result.skipped}, "
                    f"unclaimed at the stop {result.unclaimed}, split "
                    f"{'/'.join(map(str, result.split))}\n  " + "\n  ".join(result.notes)
                )
                results.append(result)
        except Exception as exc:  # reported; the other backend still runs
            log(f"{backend.name}: FAILED: {exc}")
            figures.append(absent(backend.name, first_line(exc)))
        finally:
            if isinstance(backend, PostgresBackend):
                await asyncio.to_thread(backend.drop)
        if results:
            figures.append(summarize(backend.name, results))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    with scratch("outboxd-scheduler-bench-") as scratch_dir:
        tmp = scratch_dir
        if args.keep:
            tmp = args.keep.resolve()
            tmp.mkdir(parents=True, exist_ok=True)
        backends, pg_skipped = open_backends(names, tmp / "scheduler-bench.db", args.pg, PG_SCHEMA)
        facts = report.machine_facts(backends, shared=True)
        setup = {
            "schedulers": f"{PROCESSES} x {sys.executable} -m daemon run scheduler, "
            "started at once; default role settings (sync_interval 2s, run_lease 30s)",
            "schedules": f"{args.schedules} x every: 1s, job http (POST to a receiver in the "
            "bench process)",
            "run": f"{args.seconds:g} s from both answering /healthz; counted: after a "
            f"{WARMUP:g} s warm-up, up to {TAIL:g} s before the stop; {args.repeat} per backend",
            "lateness": "started_at - fire_time of first attempts (the claim's transaction)",
            **locations(backends),
        }
        started = time.perf_counter()
        figures = asyncio.run(bench(backends, tmp, args))
        if pg_skipped:
            figures.append(absent("postgres", pg_skipped))
        setup["run time"] = f"{time.perf_counter() - started:.0f} s"
    report.print_report(args.json, facts, setup, figures, format_table)
    return 1 if any(f.runs == 0 for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
