"""Benchmark of the outbox store on SQLite and PostgreSQL.

Measures, per backend:

1. enqueue rate: ``Store.enqueue_many`` in batches, and single ``Store.enqueue`` calls;
   on SQLite single calls again with a dispatcher's doorbell listener (its own process)
   to ring after each commit;
2. claim + deliver rate: ``claim(limit=B)`` then ``record([Delivered ...])`` until the
   backlog is drained, for several batch sizes B, next to a raw baseline: the same loop
   in plain SQL (sqlite3 / psycopg, no peewee, no status events, no checks) on the same
   database and table, and the ratio store / raw;
3. claim latency (median, p99) of one ``claim(limit=100)`` at growing backlogs; the
   claimed messages are released outside the timing so the backlog stays constant;
4. a probe: ``claim(limit=10)`` on a just-migrated table of 1,000 enqueued messages.

Every measurement starts from an empty, freshly migrated database. PostgreSQL runs in
its own schema (``outboxd_bench``), dropped before and after the run. Every claim is
checked: one that returns more messages than its limit marks its figure INVALID.

    .venv/bin/python ops/bench/outbox.py            # full run, a few minutes
    .venv/bin/python ops/bench/outbox.py --quick    # smoke run, seconds
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from lib import cli, report
from lib.backends import CHANNEL, Backend, Connection, locations, open_backends, scratch, utcnow
from lib.report import join, log, median, percentile, verdict

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import AttemptResult, Delivered, NewMessage, Released
from daemon.store.address import sqlite_path
from daemon.store.db import open_database
from daemon.store.doorbell import SOCKET_SUFFIX, folder_of
from daemon.store.sync import Store

OWNER = "bench-worker"
PAYLOAD = b"MSH|^~\\&|BENCH|" + b"x" * 241  # 256 bytes, about a small HL7 message
LEASE = 60.0
LATENCY_LIMIT = 100
LATENCY_WARMUP = 5
PROBE_COUNT = 1_000
PROBE_LIMIT = 10
PG_SCHEMA = "outboxd_bench"
RAW_NOTE = "plain SQL, same table, no events"
# a dispatcher's doorbell listener alone: daemon.store.doorbell.listen, rings ignored
LISTENER = (
    "import asyncio, sys\n"
    "from daemon.store.doorbell import listen\n"
    "asyncio.run(listen(sys.argv[1], lambda channel: None))\n"
)


# --- sizes and results -----------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    enqueue_many: int  # messages enqueued with enqueue_many, per run
    enqueue_batch: int  # messages per enqueue_many call
    enqueue_single: int  # messages enqueued one call each, per run
    drain: int  # backlog drained per run, for batch sizes >= 10
    drain_small: int  # backlog drained per run, for batch sizes < 10
    batches: tuple[int, ...]
    backlogs: tuple[int, ...]
    latency_samples: int

    def drain_count(self, batch: int) -> int:
        return self.drain if batch >= 10 else self.drain_small


FULL = Sizes(
    enqueue_many=10_000,
    enqueue_batch=500,
    enqueue_single=1_000,
    drain=10_000,
    drain_small=1_000,
    batches=(1, 100, 500),
    backlogs=(10_000, 100_000, 1_000_000),
    latency_samples=200,
)
QUICK = replace(
    FULL,
    enqueue_many=1_000,
    enqueue_single=100,
    drain=1_000,
    drain_small=100,
    backlogs=(1_000, 10_000),
    latency_samples=20,
)


@dataclass
class Figure:
    backend: str
    name: str
    value: float
    unit: str
    note: str = ""
    runs: list[float] = field(default_factory=list)


@dataclass
class ClaimCheck:
    """Claims that returned more messages than their limit: a bug whenever ``over`` > 0,
    and the figure measured with it is not what it claims to be."""

    claims: int = 0
    over: int = 0
    most: int = 0

    def see(self, limit: int, got: int) -> None:
        self.claims += 1
        if got > limit:
            self.over += 1
            self.most = max(self.most, got)

    def note(self) -> str:
        if not self.over:
            return ""
        return (
            f"INVALID: {self.over} of {self.claims} claims returned more than the limit "
            f"(up to {self.most:,})"
        )


# --- a fresh database -------------------------------------------------------------------


@contextmanager
def fresh(backend: Backend) -> Iterator[tuple[Store, Connection]]:
    """An empty, migrated database, with the store and a raw connection on it."""
    backend.reset()
    store = Store(open_database(DatabaseSettings(url=backend.url)))
    raw = backend.connect_raw()
    try:
        yield store, raw
    finally:
        raw.close()
        store.close()


def fill(backend: Backend, raw: Connection, count: int) -> float:
    """Insert ``count`` due pending messages in one bulk ``INSERT ... SELECT`` (no status
    events, no checks), then settle the table; returns the seconds the insert took."""
    p = backend.param
    sql = (
        'INSERT INTO outboxd_message (channel, kind, "key", payload, status, attempts, '
        "next_attempt_at, created_at, updated_at) "
        f"SELECT {p}, 'raw', 'k' || n, {p}, 'pending', 0, {p}, {p}, {p} FROM {backend.series}"
    )
    when = backend.timestamp(utcnow() - timedelta(seconds=1))
    started = time.perf_counter()
    raw.execute(sql, (CHANNEL, PAYLOAD, when, when, when, 1, count))
    elapsed = time.perf_counter() - started
    backend.settle(vacuum=False)  # ANALYZE: what autovacuum does soon after a bulk load
    return elapsed


# --- queues: the store, and the raw baseline, behind one interface ------------------------


class Queue(Protocol):
    def claim(self, limit: int) -> list[int]: ...

    def ack(self, ids: list[int]) -> None: ...

    def release(self, ids: list[int]) -> None: ...


class StoreQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

    def claim(self, limit: int) -> list[int]:
        return [m.id for m in self.store.claim([CHANNEL], OWNER, limit=limit, lease=LEASE)]

    def ack(self, ids: list[int]) -> None:
        self._record([Delivered(i, "AA") for i in ids])

    def release(self, ids: list[int]) -> None:
        self._record([Released(i) for i in ids])

    def _record(self, outcomes: Sequence[AttemptResult]) -> None:
        result = self.store.record(OWNER, outcomes)
        if result.lost:
            raise RuntimeError(f"store lost {len(result.lost)} leases during the bench")


class RawQueue:
    """The bare loop: claim with ``UPDATE ... RETURNING``, finish with one ``UPDATE``,
    each in its own transaction. The due rows are picked in a materialized CTE, so the
    ``LIMIT`` (and, on PostgreSQL, ``FOR UPDATE SKIP LOCKED``) is evaluated once."""

    def __init__(self, backend: Backend, conn: Connection) -> None:
        self.backend = backend
        self.conn = conn
        p = backend.param
        self.claim_sql = (
            "WITH due AS MATERIALIZED (SELECT id FROM outboxd_message "
            f"WHERE channel = {p} AND status = 'pending' AND next_attempt_at <= {p} "
            f"ORDER BY next_attempt_at, id LIMIT {p}{backend.lock}) "
            f"UPDATE outboxd_message SET status = 'sending', lease_owner = {p}, "
            f"lease_expires_at = {p}, updated_at = {p} "
            "WHERE id IN (SELECT id FROM due) RETURNING id, payload"
        )
        self.finish_sql = (
            f"UPDATE outboxd_message SET status = {p}, attempts = attempts + {p}, "
            f"sent_at = {p}, updated_at = {p}, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id IN ({ids}) RETURNING id"
        )

    def _transaction(self, sql: str, params: Sequence[Any]) -> list[Any]:
        self.conn.execute(self.backend.begin)
        try:
            rows = self.conn.execute(sql, params).fetchall()
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return rows

    def claim(self, limit: int) -> list[int]:
        now = utcnow()
        ts = self.backend.timestamp
        params = (CHANNEL, ts(now), limit, OWNER, ts(now + timedelta(seconds=LEASE)), ts(now))
        return [row[0] for row in self._transaction(self.claim_sql, params)]

    def ack(self, ids: list[int]) -> None:
        now = self.backend.timestamp(utcnow())
        self._finish(ids, ("sent", 1, now, now))

    def release(self, ids: list[int]) -> None:
        self._finish(ids, ("pending", 0, None, self.backend.timestamp(utcnow())))

    def _finish(self, ids: list[int], params: tuple[Any, ...]) -> None:
        sql = self.finish_sql.format(ids=", ".join([self.backend.param] * len(ids)))
        done = self._transaction(sql, (*params, *ids))
        if len(done) != len(ids):
            raise RuntimeError(f"raw finish changed {len(done)} of {len(ids)} rows")


KINDS = ("store", "raw")


def queue_of(kind: str, backend: Backend, store: Store, raw: Connection) -> Queue:
    return StoreQueue(store) if kind == "store" else RawQueue(backend, raw)


# --- measurements ------------------------------------------------------------------------


def drain(queue: Queue, batch: int, check: ClaimCheck) -> int:
    """Claim and deliver until nothing is due; returns the messages delivered."""
    done = 0
    while ids := queue.claim(batch):
        check.see(batch, len(ids))
        queue.ack(ids)
        done += len(ids)
    return done


def drain_rate(backend: Backend, kind: str, batch: int, count: int, check: ClaimCheck) -> float:
    with fresh(backend) as (store, raw):
        fill(backend, raw, count)
        queue = queue_of(kind, backend, store, raw)
        started = time.perf_counter()
        done = drain(queue, batch, check)
        elapsed = time.perf_counter() - started
    if done != count:
        raise RuntimeError(f"{kind} drained {done} of {count} messages")
    return count / elapsed


@contextmanager
def listening(backend: Backend) -> Iterator[None]:
    """A doorbell listener on the SQLite database of ``backend``, in a process of its
    own, bound by the time the block runs."""
    path = sqlite_path(backend.url)
    folder = folder_of(path) if path is not None else None
    if folder is None:
        raise RuntimeError(f"no doorbell for {backend.url}")
    process = subprocess.Popen([sys.executable, "-c", LISTENER, folder])
    try:
        deadline = time.monotonic() + 30
        while not (
            os.path.isdir(folder) and any(n.endswith(SOCKET_SUFFIX) for n in os.listdir(folder))
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the doorbell listener did not start")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait()


def enqueue_rate(backend: Backend, count: int, batch: int, rung: bool = False) -> float:
    """Messages/s through ``enqueue_many`` in calls of ``batch`` (1: ``enqueue``);
    with ``rung``, a doorbell listener there to ring."""
    messages = [NewMessage(CHANNEL, f"e{i}", PAYLOAD) for i in range(count)]
    with fresh(backend) as (store, _raw), listening(backend) if rung else nullcontext():
        started = time.perf_counter()
        if batch == 1:
            for message in messages:
                store.enqueue(message)
        else:
            for start in range(0, count, batch):
                store.enqueue_many(messages[start : start + batch])
        return count / (time.perf_counter() - started)


def claim_latencies(queue: Queue, samples: int, check: ClaimCheck) -> list[float]:
    """Seconds per ``claim(LATENCY_LIMIT)``; each claim is released untimed."""
    timings: list[float] = []
    for i in range(LATENCY_WARMUP + samples):
        started = time.perf_counter()
        ids = queue.claim(LATENCY_LIMIT)
        elapsed = time.perf_counter() - started
        queue.release(ids)
        if len(ids) < LATENCY_LIMIT:
            raise RuntimeError(f"claim returned {len(ids)} of {LATENCY_LIMIT} messages")
        check.see(LATENCY_LIMIT, len(ids))
        if i >= LATENCY_WARMUP:
            timings.append(elapsed)
    return timings


def rate_figure(backend: Backend, name: str, runs: list[float], note: str = "") -> Figure:
    return Figure(backend.name, name, median(runs), "msg/s", note, runs)


def bench_probe(backend: Backend) -> list[Figure]:
    """``claim(PROBE_LIMIT)`` on a just-migrated table that ``enqueue_many`` filled and
    that has no planner statistics yet: a new installation's first minute."""
    log(f"{backend.name}: claim(limit={PROBE_LIMIT}) on a fresh table of {PROBE_COUNT:,}")
    messages = [NewMessage(CHANNEL, f"f{i}", PAYLOAD) for i in range(PROBE_COUNT)]
    figures = []
    for kind in KINDS:
        with fresh(backend) as (store, raw):
            store.enqueue_many(messages)
            started = time.perf_counter()
            got = len(queue_of(kind, backend, store, raw).claim(PROBE_LIMIT))
            elapsed = time.perf_counter() - started
        outcome = "ok" if got <= PROBE_LIMIT else f"BUG: leased {got:,}, asked for {PROBE_LIMIT}"
        name = f"fresh {PROBE_COUNT:,}: claim({PROBE_LIMIT}) {kind} got"
        figures.append(
            Figure(backend.name, name, got, "msgs", f"{outcome}; took {elapsed * 1000:.0f} ms")
        )
    return figures


def bench_enqueue(backend: Backend, sizes: Sizes, repeat: int) -> list[Figure]:
    figures = []
    kinds = [(sizes.enqueue_batch, sizes.enqueue_many, False), (1, sizes.enqueue_single, False)]
    if backend.name == "sqlite":
        kinds.append((1, sizes.enqueue_single, True))
    for batch, count, rung in kinds:
        label = f"enqueue_many ({batch}/call)" if batch > 1 else "enqueue (1/call)"
        label += ", a listener rung" if rung else ""
        log(f"{backend.name}: {label}, {count:,} messages x {repeat}")
        runs = [enqueue_rate(backend, count, batch, rung) for _ in range(repeat)]
        figures.append(rate_figure(backend, label, runs, f"{count:,} msgs"))
    return figures


def bench_drain(backend: Backend, sizes: Sizes, repeat: int) -> list[Figure]:
    figures = []
    for batch in sizes.batches:
        count = sizes.drain_count(batch)
        log(f"{backend.name}: claim+deliver batch={batch}, {count:,} messages x {repeat}")
        runs: dict[str, list[float]] = {kind: [] for kind in KINDS}
        checks = {kind: ClaimCheck() for kind in KINDS}
        for _ in range(repeat):  # interleaved, so noise hits both alike
            for kind in KINDS:
                runs[kind].append(drain_rate(backend, kind, batch, count, checks[kind]))
        rates = {
            kind: rate_figure(
                backend,
                f"claim+deliver B={batch} {kind}",
                runs[kind],
                join(f"{count:,} msgs", RAW_NOTE if kind == "raw" else "", checks[kind].note()),
            )
            for kind in KINDS
        }
        ratio = rates["store"].value / rates["raw"].value
        figures += [
            *rates.values(),
            Figure(backend.name, f"claim+deliver B={batch} store/raw", ratio, "x"),
        ]
    return figures


def latency_figures(
    backend: Backend, backlog: int, kind: str, timings: list[float], check: ClaimCheck
) -> list[Figure]:
    note = join(f"{len(timings)} samples", check.note())
    return [
        Figure(backend.name, f"claim {LATENCY_LIMIT} @ {backlog:,} {kind} {label}", ms, "ms", note)
        for label, ms in (
            ("p50", median(timings) * 1000),
            ("p99", percentile(timings, 99) * 1000),
        )
    ]


def bench_latency(backend: Backend, sizes: Sizes) -> list[Figure]:
    figures: list[Figure] = []
    medians: dict[str, dict[int, float]] = {kind: {} for kind in KINDS}
    for backlog in sizes.backlogs:
        log(f"{backend.name}: claim latency at backlog {backlog:,}")
        with fresh(backend) as (store, raw):
            seconds = fill(backend, raw, backlog)
            note = f"{seconds:.1f} s, INSERT ... SELECT, no status events"
            figures.append(
                Figure(
                    backend.name, f"fill {backlog:,} (bulk SQL)", backlog / seconds, "row/s", note
                )
            )
            for kind in KINDS:
                check = ClaimCheck()
                queue = queue_of(kind, backend, store, raw)
                timings = claim_latencies(queue, sizes.latency_samples, check)
                medians[kind][backlog] = median(timings)
                figures += latency_figures(backend, backlog, kind, timings, check)
    first, last = min(sizes.backlogs), max(sizes.backlogs)
    if first != last:
        for kind in KINDS:
            ratio = medians[kind][last] / medians[kind][first]
            note = f"target < 2x: {verdict(ratio < 2)}" if kind == "store" else ""
            name = f"claim p50 {kind} {last:,}/{first:,}"
            figures.append(Figure(backend.name, name, ratio, "x", note))
    return figures


def bench_backend(backend: Backend, sizes: Sizes, repeat: int) -> list[Figure]:
    try:
        return [
            *bench_probe(backend),
            *bench_enqueue(backend, sizes, repeat),
            *bench_drain(backend, sizes, repeat),
            *bench_latency(backend, sizes),
        ]
    finally:
        backend.drop()


# --- output and command line ------------------------------------------------------------


def format_table(facts: dict[str, str], setup: dict[str, str], figures: Sequence[Figure]) -> str:
    lines = report.heading("outboxd store benchmark", facts, setup)
    lines += ["", f"{'backend':<9} {'figure':<36} {'value':>9} {'unit':<6} notes"]
    for f in figures:
        value = report.value_text(f.value, f.unit, precise=f.unit in ("x", "ms"))
        note = join(f.note, report.runs_note(f.runs))
        lines.append(f"{f.backend:<9} {f.name:<36} {value:>9} {f.unit:<6} {note}".rstrip())
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.new_parser(__doc__)
    parser.add_argument("--sqlite", type=Path, help="SQLite file (must not exist; default: temp)")
    cli.add_backend_options(parser)
    parser.add_argument("--backlogs", help="claim-latency backlogs, e.g. 10000,100000,1000000")
    parser.add_argument("--batches", help="claim batch sizes, e.g. 1,100,500")
    cli.add_run_options(parser, "runs per rate, median printed (default 3)")
    cli.add_json_option(parser)
    args = cli.parse(parser, argv)
    if args.sqlite and args.sqlite.exists():
        parser.error(f"{args.sqlite} exists: the bench deletes its file, give a new path")
    return args


def choose_sizes(args: argparse.Namespace) -> tuple[Sizes, int]:
    sizes = QUICK if args.quick else FULL
    if args.backlogs:
        sizes = replace(sizes, backlogs=cli.int_list(args.backlogs))
    if args.batches:
        sizes = replace(sizes, batches=cli.int_list(args.batches))
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    return sizes, max(1, repeat)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes, repeat = choose_sizes(args)
    with scratch("outboxd-bench-") as tmp:
        sqlite_path = args.sqlite or tmp / "outbox-bench.db"
        backends, pg_skipped = open_backends(
            args.backends.split(","), sqlite_path, args.pg, PG_SCHEMA
        )
        figures = [Figure("postgres", "skipped", 0, "", pg_skipped)] if pg_skipped else []
        facts = report.machine_facts(backends)
        setup = {
            "repeat": f"{repeat} (rates: the median)",
            "payload": f"{len(PAYLOAD)} bytes, one channel",
            "backlog fill": "bulk INSERT ... SELECT in SQL (no status events), not the store;"
            " PostgreSQL: ANALYZE after each fill, as autovacuum would",
            "raw baseline": RAW_NOTE + "; claim and ack each one transaction",
            **locations(backends),
        }
        started = time.perf_counter()
        for backend in backends:
            figures += bench_backend(backend, sizes, repeat)
        setup["run time"] = f"{time.perf_counter() - started:.0f} s"
    report.print_report(args.json, facts, setup, figures, format_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
