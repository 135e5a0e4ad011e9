"""Soak: a large hospital's month of traffic compressed into one run of the whole suite,
sampling every process's memory and descriptors, the database's size, the claim time
and the delivery rate, and judging whether each stayed flat.

The suite is the repository's supervisord.conf (2 dispatchers, a poller, 2 schedulers,
the control role) with the soak's peers (MLLP, HTTP, BPJS Antrean simulators) and a
YAML file of the soak's, in a directory of its own, on a SQLite file or a PostgreSQL
schema of its own (``outboxd_soak``, dropped at the end). The traffic:

- ``--messages`` through the control API's batch enqueue at ``--rate`` (2 in 3 HL7
  to the MLLP peer, 1 in 3 JSON to the HTTP sink): the run lasts messages / rate;
- ``--visits`` outpatient visits written into a Khanza-like SQLite file as Khanza
  writes them, over the same time, read by the poller and sent to BPJS Antrean in
  order (add, then each task);
- schedules: the purge and a report once a simulated day (the run is 30 days, so a
  day is a 30th of it, at least 20 s), an http job every 5 s. The purge keeps what
  ended for 3 simulated days instead of its default 30 days, so that a month of
  purges happens within the run and the database can level off.

On a PostgreSQL server with autovacuum off (a test server may be), the soak vacuums
its schema every minute in autovacuum's stead, and says so.

Every ``--every`` seconds it samples (from /proc) each supervisord child's resident
memory and open descriptors and its children's (a dispatcher's store worker), the
database's size (SQLite file + WAL; the schema's relations on PostgreSQL) and rows, and
from the dispatchers' /metrics the p99 of the claims of the interval
(``outboxd_claim_duration_seconds``) and the delivery rate. At the end: a table of each
figure's median over the second and the last third of the samples, their ratio and a
PASS/FAIL verdict, with a sparkline of the whole run; exit 0 when every judged figure
passed, 1 when one failed, 2 when the soak itself could not run.

    .venv/bin/python ops/soak.py --backend sqlite                  # 1M messages, 50k visits
    .venv/bin/python ops/soak.py --backend postgres
    .venv/bin/python ops/soak.py --messages 20000 --visits 1000 --rate 200   # ~2 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import math
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

from lib import report
from lib.backends import DEFAULT_PG, Backend, PostgresBackend, SqliteBackend
from soakrun import load
from soakrun.hospital import Hospital
from soakrun.samples import Sample, Sampler, read_metrics, scrape
from soakrun.suite import SIMULATORS, TIMEZONE, Plan, Suite
from soakrun.vacuum import EVERY, Vacuum, autovacuum_on
from soakrun.verdicts import table, verdicts

from daemon.domain.fields import redact_url

PG_SCHEMA = "outboxd_soak"
DAYS = 30  # the run stands for a month
MIN_DAY = 20.0  # seconds: a visit's steps fit in a day
KEEP_DAYS = 3  # the purge's retention, in simulated days
BOOKING_PART = 0.75  # visits are booked in the first part of a day, to finish by its end
DRAIN_TIMEOUT = 600.0  # seconds the backlog gets to drain after the load


@dataclass
class Run:
    backend: Backend
    suite: Suite
    offer: load.Offer
    visits: int
    every: float
    day: float
    samples: list[Sample] = field(default_factory=list)
    drain_samples: list[Sample] = field(default_factory=list)
    hospital_booked: int = 0
    hospital_steps: int = 0
    hospital_error: str = ""
    drained_in: float | None = None
    polled: float = 0.0  # messages the poller stored (BPJS)
    delivered: float = 0.0
    left: dict[str, int] = field(default_factory=dict)  # status -> rows at the end
    exits: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C or SIGTERM ended the load early
    vacuum: Vacuum | None = None  # autovacuum's stand-in, where the server runs without it


def hospital_loop(run: Run, stop: threading.Event, zone: ZoneInfo) -> None:
    """Book the visits over the load's time (in the first part of each day), move
    them along a tick a second, close each day at its end."""
    hospital = Hospital(run.suite.khanza, zone)
    try:
        per_day = run.visits / max(1.0, run.offer.seconds / run.day)
        started = time.monotonic()
        days_closed = 0
        while not stop.is_set():
            elapsed = time.monotonic() - started
            day, into = divmod(elapsed, run.day)
            if day > days_closed:
                hospital.close_day(datetime.now(UTC))
                days_closed = int(day)
            target = day * per_day + per_day * min(1.0, into / (run.day * BOOKING_PART))
            due = max(0, min(run.visits, int(target)) - hospital.booked)
            hospital.tick(datetime.now(UTC), due)
            run.hospital_booked, run.hospital_steps = hospital.booked, hospital.steps
            stop.wait(1.0)
    except Exception as exc:  # reported with the figures: the run goes on without it
        run.hospital_error = f"{type(exc).__name__}: {exc}"
    finally:
        hospital.close()


async def sample(run: Run, sampler: Sampler) -> Sample:
    programs = await asyncio.to_thread(run.suite.programs)
    mine = [p for p in programs if p.pid]
    return await asyncio.to_thread(sampler.take, mine, run.offer.accepted)


async def drive(run: Run) -> None:
    suite = run.suite
    ports = suite.ports
    sampler = Sampler(run.backend, [ports.dispatcher, ports.dispatcher + 1], ports.control_health)
    stop_load = asyncio.Event()
    stop_hospital = threading.Event()
    hospital = threading.Thread(
        target=hospital_loop, args=(run, stop_hospital, ZoneInfo(TIMEZONE)), daemon=True
    )
    hospital.start()
    if run.vacuum is not None:
        run.vacuum.start()
    offering = asyncio.create_task(load.run(run.offer, suite.control_url, stop_load))
    # Ctrl-C or SIGTERM: the load stops, the backlog drains, and the report covers the
    # samples taken so far
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    waiting = asyncio.create_task(interrupted.wait())
    try:
        await sample(run, sampler)  # the first scrape: the rates are from here on
        next_at = time.monotonic() + run.every
        while not offering.done() and not interrupted.is_set():
            await asyncio.wait(
                {offering, waiting},
                timeout=max(0, next_at - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            next_at += run.every
            taken = await sample(run, sampler)
            run.samples.append(taken)
            report.log(progress(run, taken))
        if interrupted.is_set():
            run.interrupted = True
            report.log("interrupted: the load stops; waiting for the backlog to drain")
            stop_load.set()
        await offering
        stop_hospital.set()
        await asyncio.to_thread(hospital.join, 10)
        report.log("the load is offered; waiting for the backlog to drain")
        began = time.monotonic()
        # drained: nothing pending once the poller has polled twice since the hospital
        # stopped (a poll begun after it stopped has stored its last rows' messages)
        polls_at_stop = await asyncio.to_thread(poll_runs, ports.poller)
        while time.monotonic() - began < DRAIN_TIMEOUT:
            await asyncio.sleep(run.every)
            taken = await sample(run, sampler)
            run.drain_samples.append(taken)
            report.log(progress(run, taken))
            polled_since = await asyncio.to_thread(poll_runs, ports.poller) - polls_at_stop
            if taken.pending == 0 and polled_since >= 2:
                run.drained_in = time.monotonic() - began
                break
        poller = await asyncio.to_thread(scrape, ports.poller)
        run.polled = sum_metric(poller, "outboxd_poll_messages_total")
        texts = [await asyncio.to_thread(scrape, ports.dispatcher + i) for i in (0, 1)]
        run.delivered = read_metrics(texts, "").delivered
        run.left = await asyncio.to_thread(statuses, run.backend)
    finally:
        waiting.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        stop_load.set()
        stop_hospital.set()
        with contextlib.suppress(Exception):
            await offering
        await asyncio.to_thread(hospital.join, 10)
        if run.vacuum is not None:
            await asyncio.to_thread(run.vacuum.stop)


def poll_runs(port: int) -> float:
    """How many polls the poller has run, by its /metrics."""
    return sum_metric(scrape(port), "outboxd_poll_runs_total")


def sum_metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def statuses(backend: Backend) -> dict[str, int]:
    conn = backend.connect_raw()
    try:
        rows = conn.execute("SELECT status, count(*) FROM outboxd_message GROUP BY status")
        return {str(status): int(count) for status, count in rows.fetchall()}
    finally:
        conn.close()


def progress(run: Run, s: Sample) -> str:
    rate = "-" if s.delivery_rate is None else f"{s.delivery_rate:,.0f}"
    p99 = "-" if s.claim_p99_ms is None else f"{s.claim_p99_ms:.1f}"
    rss = sum(p.rss_kb for p in s.processes.values()) / 1024
    return (
        f"  t={s.at:6.0f}s offered {s.offered:,}/{run.offer.total:,} visits "
        f"{run.hospital_booked:,}/{run.visits:,} delivered {s.delivered:,.0f} ({rate}/s) "
        f"pending {s.pending:,.0f} claim p99 {p99} ms db {s.db_bytes / 2**20:,.1f} MiB "
        f"rows {s.messages:,} rss {rss:,.0f} MiB"
    )


def write_csv(path: Path, samples: Sequence[Sample]) -> None:
    names = sorted({n for s in samples for n in s.processes})
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["t", "db_bytes", "wal_bytes", "messages", "visits", "delivered", "delivery_rate",
             "claim_p99_ms", "claims", "pending", "oldest_pending_s", "offered"]
            + [f"rss_kb {n}" for n in names] + [f"fds {n}" for n in names]
        )  # fmt: skip
        for s in samples:
            writer.writerow(
                [f"{s.at:.1f}", s.db_bytes, s.wal_bytes, s.messages, s.visits, f"{s.delivered:.0f}",
                 "" if s.delivery_rate is None else f"{s.delivery_rate:.1f}",
                 "" if s.claim_p99_ms is None else f"{s.claim_p99_ms:.2f}",
                 s.claims, f"{s.pending:.0f}", f"{s.oldest_pending_s:.1f}", s.offered]
                + [s.processes[n].rss_kb if n in s.processes else "" for n in names]
                + [s.processes[n].fds if n in s.processes else "" for n in names]
            )  # fmt: skip


def print_report(run: Run, args: argparse.Namespace, facts: dict[str, str], took: float) -> bool:
    """The set-up, the totals and the table on stdout; True when every verdict passed."""
    offer = run.offer
    keep = KEEP_DAYS * run.day
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    setup = {
        "command": "ops/soak.py " + shlex.join(args.argv),
        "database": redact_url(run.backend.url),
        "load average": f"{facts.pop('load average', '?')}; {load_end} at the end",
        "traffic": f"{offer.total:,} messages via POST /api/v1/messages in batches of "
        f"{load.BATCH} at {offer.rate:,.0f} msg/s (2/3 HL7 -> MLLP, 1/3 JSON -> HTTP); "
        f"{run.visits:,} Khanza visits -> BPJS Antrean (add + tasks, in order)",
        "month": f"a day = {run.day:.0f} s ({DAYS} days in {offer.seconds:,.0f} s); purge "
        f"and report every day, keeping {KEEP_DAYS} days ({keep:.0f} s) instead of 30; "
        "http job every 5 s",
        "samples": f"every {run.every:g} s: {len(run.samples)} during the load (judged: "
        f"the 2nd third against the last), {len(run.drain_samples)} while draining",
        "run time": f"{took:,.0f} s",
    }
    if run.vacuum is not None:
        setup["vacuum"] = (
            "autovacuum is off on this server: the soak ran VACUUM (ANALYZE) on its schema's "
            f"tables every {EVERY:.0f} s in its stead ({run.vacuum.runs} times, "
            f"{run.vacuum.seconds:,.0f} s in all)"
            + (f"; FAILED: {run.vacuum.error}" if run.vacuum.error else "")
        )
    lines = report.heading(f"outboxd soak ({run.backend.name})", facts, setup)
    offered_s = (offer.finished or time.monotonic()) - offer.started
    bpjs = f"{run.polled:,.0f}"
    drained = (
        "not within the drain timeout" if run.drained_in is None else f"{run.drained_in:.0f} s"
    )
    lines += [
        "",
        "totals",
        f"  offered        {offer.accepted:,} accepted by the API in {offered_s:,.0f} s "
        f"({offer.accepted / max(offered_s, 1e-9):,.0f} msg/s); batches tried again: "
        f"{offer.refused_batches}",
        f"  visits         {run.hospital_booked:,} booked, {run.hospital_steps:,} Khanza rows "
        f"written; BPJS Antrean messages stored by the poller: {bpjs}",
        f"  delivered      {run.delivered:,.0f} (dispatchers' counters); backlog drained in "
        f"{drained} after the load",
        "  left in db     " + (", ".join(f"{k} {v:,}" for k, v in sorted(run.left.items())) or "-"),
        "  exits          "
        + ", ".join(f"{k.split(':')[-1]} {v}" for k, v in sorted(run.exits.items())),
    ]
    restarts = [n for s in run.samples + run.drain_samples for n in s.notes]
    lines += [f"  restarted      {note}" for note in restarts]
    if run.hospital_error:
        lines.append(f"  hospital       FAILED: {run.hospital_error}")
    if offer.errors:
        lines.append(f"  API errors     {offer.errors[0]} ({len(offer.errors)} kept)")
    rows = verdicts(run.samples, lambda name: not name.startswith(SIMULATORS))
    judged = [r for r in rows if r.result != "-"]
    failed = [r for r in judged if r.result == "FAIL"]
    lost = (
        offer.accepted
        + run.polled
        - run.delivered
        - sum(v for k, v in run.left.items() if k not in ("sent", "confirmed"))
    )
    problems = list(failed)
    lines += ["", *table(rows), ""]
    summary = f"{len(judged) - len(failed)} of {len(judged)} judged figures flat" + (
        f"; FAILED: {', '.join(r.figure for r in failed)}" if failed else ""
    )
    if run.interrupted:
        lines.append(f"  interrupted    the load stopped at {offer.accepted:,} of {offer.total:,}")
    healthy = (
        not run.interrupted
        and not restarts
        and not run.hospital_error
        and all(v == 0 for v in run.exits.values())
    )
    lines.append(f"verdict: {'PASS' if not problems and healthy else 'FAIL'} ({summary})")
    if not healthy:
        lines.append("  (a process restarted, exited other than 0, or the hospital failed)")
    if not math.isclose(lost, 0, abs_tol=0.5):
        lines.append(
            f"  accounting: offered + polled - delivered - unfinished = {lost:,.0f} "
            "(a redelivery after a lost lease counts twice; purged rows are not counted)"
        )
    print("\n".join(lines))
    return not problems and healthy


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL URL (default {DEFAULT_PG})")
    parser.add_argument(
        "--pg-schema", default=PG_SCHEMA, help=f"the soak's own schema (default {PG_SCHEMA})"
    )
    parser.add_argument("--messages", type=int, default=1_000_000, help="through the API")
    parser.add_argument("--visits", type=int, default=50_000, help="Khanza visits -> BPJS")
    parser.add_argument("--rate", type=float, default=600.0, help="API messages a second")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--keep", type=Path, help="keep the suite's directory (logs) here")
    parser.add_argument("--csv", type=Path, help="write every sample to this CSV file")
    args = parser.parse_args(argv)
    for name in ("messages", "rate", "every"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be above 0")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.pg_schema):
        parser.error(f"--pg-schema {args.pg_schema!r}: lower-case letters, digits and _")
    if args.visits < 0:
        parser.error("--visits must not be negative")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="outboxd-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    backend: Backend
    try:
        if args.backend == "sqlite":
            backend = SqliteBackend(root / "var" / "outboxd.db")
        else:
            backend = PostgresBackend(args.pg, args.pg_schema)
        backend.reset()
    except Exception as exc:
        print(f"soak: the {args.backend} database is not usable: {exc}", file=sys.stderr)
        return 69
    facts = report.machine_facts([backend], shared=True)
    offer = load.Offer(args.messages, args.rate)
    day = max(MIN_DAY, offer.seconds / DAYS)
    suite = Suite(root, backend.url, Plan(day=day, keep=KEEP_DAYS * day))
    run = Run(backend, suite, offer, args.visits, args.every, day)
    if isinstance(backend, PostgresBackend) and not autovacuum_on(backend):
        run.vacuum = Vacuum(backend)
    started = time.monotonic()
    try:
        report.log(f"soak in {root}: starting the suite")
        Hospital(suite.khanza, ZoneInfo(TIMEZONE)).close()  # the file the poller reads
        suite.start()
        report.log(f"soak: offering {offer.total:,} messages over {offer.seconds:,.0f} s")
        asyncio.run(drive(run))
        run.exits = suite.stop()
    except Exception as exc:
        print(f"soak: the run failed: {exc}", file=sys.stderr)
        return 2
    finally:
        suite.kill()
        if args.csv:
            write_csv(args.csv, run.samples + run.drain_samples)
    passed = print_report(run, args, facts, time.monotonic() - started)
    if isinstance(backend, PostgresBackend):
        backend.drop()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
