"""Benchmark of the outbox store on SQLite and PostgreSQL.

Measures, per backend:

1. enqueue rate: ``Store.enqueue_many`` in batches, and single ``Store.enqueue`` calls;
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
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import peewee
import psycopg

from daemon.settings import DatabaseSettings
from daemon.store import Store, migrate, open_database, redact_url
from daemon.store.types import Delivered, NewMessage, Outcome, Released

CHANNEL = "bench"
OWNER = "bench-worker"
PAYLOAD = b"MSH|^~\\&|BENCH|" + b"x" * 241  # 256 bytes, about a small HL7 message
LEASE = 60.0
LATENCY_LIMIT = 100
LATENCY_WARMUP = 5
PROBE_COUNT = 1_000
PROBE_LIMIT = 10
PG_SCHEMA = "outboxd_bench"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
RAW_NOTE = "plain SQL, same table, no events"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


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
QUICK = Sizes(
    enqueue_many=1_000,
    enqueue_batch=500,
    enqueue_single=100,
    drain=1_000,
    drain_small=100,
    batches=(1, 100, 500),
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


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(samples)
    rank = -(-len(ordered) * pct // 100)  # ceil
    return ordered[max(1, int(rank)) - 1]


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


# --- backends --------------------------------------------------------------------------


class Connection(Protocol):
    """What the bench needs of a DB-API connection (sqlite3 and psycopg both have it)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def close(self) -> None: ...


class Backend:
    """One database: how to empty it, how to reach it raw, and its SQL dialect bits."""

    name: str
    url: str  # the store's URL
    param: str  # DB-API placeholder
    begin: str  # starts a write transaction
    lock: str  # appended to the raw claim's sub-select
    series: str  # FROM clause yielding n from param 1 to param 2
    settle: str | None = None  # run after a bulk fill

    def reset(self) -> None:
        """An empty database with the current schema."""
        self.drop()
        self.create()
        db = open_database(DatabaseSettings(url=self.url))
        try:
            migrate(db)
        finally:
            db.close()

    def drop(self) -> None:
        raise NotImplementedError

    def create(self) -> None:
        raise NotImplementedError

    def connect_raw(self) -> Connection:
        """A connection in autocommit mode: transactions are begun explicitly."""
        raise NotImplementedError

    def timestamp(self, value: datetime) -> Any:
        """A UTC instant as the store writes it in this database."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"
    param = "?"
    begin = "BEGIN IMMEDIATE"
    lock = ""
    series = (
        "(WITH RECURSIVE s(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM s WHERE n < ?) "
        "SELECT n FROM s) AS s"
    )

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.url = f"sqlite:///{self.path}"

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def connect_raw(self) -> Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        # the store's per-connection pragmas (journal_mode=wal persists in the file)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def timestamp(self, value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def version(self) -> str:
        return sqlite3.sqlite_version


class PostgresBackend(Backend):
    name = "postgres"
    param = "%s"
    begin = "BEGIN"
    lock = " FOR UPDATE SKIP LOCKED"
    series = "generate_series(%s::bigint, %s::bigint) AS s(n)"
    settle = "ANALYZE outboxd_message"  # what autovacuum does soon after a bulk load

    def __init__(self, url: str) -> None:
        self.admin_url = url
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
        query.append(("options", f"-csearch_path={PG_SCHEMA}"))
        self.url = urlunsplit(parts._replace(query=urlencode(query)))
        self._version = self.admin("SHOW server_version")[0]

    def admin(self, sql: str) -> Any:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchone() if cursor.description else None

    def drop(self) -> None:
        self.admin(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")

    def create(self) -> None:
        self.admin(f"CREATE SCHEMA {PG_SCHEMA}")

    def connect_raw(self) -> Connection:
        return psycopg.connect(self.url, autocommit=True)

    def timestamp(self, value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None)

    def version(self) -> str:
        return self._version


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
    if backend.settle:
        raw.execute(backend.settle)
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

    def _record(self, outcomes: Sequence[Outcome]) -> None:
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


def enqueue_rate(backend: Backend, count: int, batch: int) -> float:
    """Messages/s through ``enqueue_many`` in calls of ``batch`` (1: ``enqueue``)."""
    messages = [NewMessage(CHANNEL, f"e{i}", PAYLOAD) for i in range(count)]
    with fresh(backend) as (store, _raw):
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
    return Figure(backend.name, name, statistics.median(runs), "msg/s", note, runs)


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
        verdict = "ok" if got <= PROBE_LIMIT else f"BUG: leased {got:,}, asked for {PROBE_LIMIT}"
        name = f"fresh {PROBE_COUNT:,}: claim({PROBE_LIMIT}) {kind} got"
        figures.append(
            Figure(backend.name, name, got, "msgs", f"{verdict}; took {elapsed * 1000:.0f} ms")
        )
    return figures


def bench_enqueue(backend: Backend, sizes: Sizes, repeat: int) -> list[Figure]:
    figures = []
    for batch, count in ((sizes.enqueue_batch, sizes.enqueue_many), (1, sizes.enqueue_single)):
        label = f"enqueue_many ({batch}/call)" if batch > 1 else "enqueue (1/call)"
        log(f"{backend.name}: {label}, {count:,} messages x {repeat}")
        runs = [enqueue_rate(backend, count, batch) for _ in range(repeat)]
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
            ("p50", statistics.median(timings) * 1000),
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
                medians[kind][backlog] = statistics.median(timings)
                figures += latency_figures(backend, backlog, kind, timings, check)
    first, last = min(sizes.backlogs), max(sizes.backlogs)
    if first != last:
        for kind in KINDS:
            ratio = medians[kind][last] / medians[kind][first]
            note = f"target < 2x: {'met' if ratio < 2 else 'MISSED'}" if kind == "store" else ""
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


# --- output ------------------------------------------------------------------------------


def machine_facts(backends: Sequence[Backend]) -> dict[str, str]:
    facts = {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "peewee": peewee.__version__,
        "psycopg": psycopg.__version__,
    }
    for backend in backends:
        if isinstance(backend, PostgresBackend):
            facts["postgresql"] = backend.version()
    return facts


def format_value(figure: Figure) -> str:
    if not figure.unit:
        return ""
    if figure.unit in ("x", "ms"):
        return f"{figure.value:.2f}"
    return f"{figure.value:,.0f}"


def format_table(facts: dict[str, str], setup: dict[str, str], figures: Sequence[Figure]) -> str:
    lines = ["outboxd store benchmark", ""]
    lines += [f"  {key:<14} {value}" for key, value in {**facts, **setup}.items()]
    lines += ["", f"{'backend':<9} {'figure':<36} {'value':>9} {'unit':<6} notes"]
    for f in figures:
        runs = ""
        if len(f.runs) > 1:
            runs = "median of " + " ".join(f"{r:,.0f}" for r in sorted(f.runs))
        line = f"{f.backend:<9} {f.name:<36} {format_value(f):>9} {f.unit:<6} {join(f.note, runs)}"
        lines.append(line.rstrip())
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", type=Path, help="SQLite file (must not exist; default: temp)")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL URL (default {DEFAULT_PG})")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--backlogs", help="claim-latency backlogs, e.g. 10000,100000,1000000")
    parser.add_argument("--batches", help="claim batch sizes, e.g. 1,100,500")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeat", type=int, help="runs per rate, median printed (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    unknown = set(args.backends.split(",")) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.sqlite and args.sqlite.exists():
        parser.error(f"{args.sqlite} exists: the bench deletes its file, give a new path")
    return args


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(","))


def choose_sizes(args: argparse.Namespace) -> tuple[Sizes, int]:
    sizes = QUICK if args.quick else FULL
    if args.backlogs:
        sizes = replace(sizes, backlogs=int_list(args.backlogs))
    if args.batches:
        sizes = replace(sizes, batches=int_list(args.batches))
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    return sizes, max(1, repeat)


def open_backends(args: argparse.Namespace, tmp: Path) -> tuple[list[Backend], list[Figure]]:
    """The backends to run, and a ``skipped`` figure for each that did not answer."""
    backends: list[Backend] = []
    skipped: list[Figure] = []
    names = args.backends.split(",")
    if "sqlite" in names:
        backends.append(SqliteBackend(args.sqlite or tmp / "outbox-bench.db"))
    if "postgres" in names:
        try:
            backends.append(PostgresBackend(args.pg))
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            note = f"{redact_url(args.pg)} did not answer: {reason}"
            log(f"postgres: skipped: {note}")
            skipped.append(Figure("postgres", "skipped", 0, "", note))
    return backends, skipped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes, repeat = choose_sizes(args)
    tmp = Path(tempfile.mkdtemp(prefix="outboxd-bench-"))
    try:
        backends, figures = open_backends(args, tmp)
        facts = machine_facts(backends)
        setup = {
            "repeat": f"{repeat} (rates: the median)",
            "payload": f"{len(PAYLOAD)} bytes, one channel",
            "backlog fill": "bulk INSERT ... SELECT in SQL (no status events), not the store;"
            " PostgreSQL: ANALYZE after each fill, as autovacuum would",
            "raw baseline": RAW_NOTE + "; claim and ack each one transaction",
        }
        setup.update({b.name + " at": redact_url(b.url) for b in backends})
        started = time.perf_counter()
        for backend in backends:
            figures += bench_backend(backend, sizes, repeat)
        setup["run time"] = f"{time.perf_counter() - started:.0f} s"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        report = {"machine": facts, "setup": setup, "figures": [asdict(f) for f in figures]}
        print(json.dumps(report, indent=2))
    else:
        print(format_table(facts, setup, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
