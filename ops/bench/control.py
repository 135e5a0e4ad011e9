"""Benchmark of the control role's JSON API on a large outbox: a real control process, a
real database prefilled with ``--rows`` messages, an aiohttp client on keep-alive.

Per backend (a SQLite file in a temp dir, or the PostgreSQL schema
``outboxd_bench_control``, dropped afterwards), the database is migrated, then filled
with plain SQL in batches of 100,000 (no status events; the fill time is printed, not
counted): four channels, created over the last 30 days in id order, mostly sent, the
``lab`` channel's backlog pending, ``--bulk`` failed on ``hie`` and a few pending and
failed elsewhere. PostgreSQL then gets ``VACUUM ANALYZE``, as autovacuum would; SQLite
nothing (the store never runs ``ANALYZE``). Then ``python -m daemon run control -c
FILE`` starts (no tokens: a loopback caller is admin) and the bench measures:

1. ``GET /api/v1/stats``, p50 / p99 over sequential requests, also with
   ``If-None-Match`` (how many answered 304 is printed);
2. ``GET /api/v1/messages?channel=hie&status=failed``: the first page, the tenth (its
   cursor found by following ``next``), and the first page with ``If-None-Match``
   (the 304 path); an unfiltered first page;
3. ``GET /metrics`` on the control role's health port (queue gauges read from the
   database at each scrape);
4. enqueue through ``POST /api/v1/messages``: one message per request, sequential and 8
   in flight, and batches of 500 (messages/s);
5. a bulk retry by filter of every failed ``hie`` message (``POST
   /api/v1/messages/retry``; 202 and a ``Location`` polled until the operation is not
   running) while a real dispatcher process (``python -m daemon run dispatcher``, 4 MLLP
   connections to ``python -m daemon.sim.mllp --canned``) delivers ``lab``'s backlog:
   the dispatcher's delivered messages/s from its ``/metrics`` before and during the
   bulk operation, and their ratio. (The dispatcher exports no claim latency; its mean
   send time is printed.) Between repeats the retried and the delivered rows are put
   back with plain SQL, untimed.

6. content search (``--only search``): the first page of a search, p50 / p99 over
   sequential requests, each asking for another value where there are several: text
   that few payloads hold (``q=`` an MRN: about a dozen patients' messages), text every
   payload holds (``q=Santoso``), that text with a selective filter (``channel=hie&
   status=failed``), text no payload holds, and the exact fields (``mrn=``, one patient's
   ~5 messages; ``control_id=``, one; ``message_type=``, every message). The prefill
   writes each message's fields (MSH-10, MSH-9 twice, PID-3) as the store does at
   enqueue; the text index is kept by the database as rows are written.

``--only reads,enqueue,bulk,search`` runs these parts (1-3, 4, 5, 6; comma-separated)
after the prefill and skips the others, e.g. to time the enqueue path alone. What the
search index costs at enqueue is the enqueue part run on this version and on the one
before it (``git worktree`` of the commit before schema v6).

Latency figures are the median over ``--repeat`` runs of each run's p50 and p99;
rates the median of the runs. Nothing is asserted: the targets are printed beside the
figures.

    .venv/bin/python ops/bench/control.py --quick            # smoke run, a minute or two
    .venv/bin/python ops/bench/control.py --backend sqlite   # 1,000,000 rows
    .venv/bin/python ops/bench/control.py --backend postgres --rows 300000
    .venv/bin/python ops/bench/control.py --quick --only enqueue --repeat 5
    .venv/bin/python ops/bench/control.py --backend both --only search,enqueue
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from lib import cli, report
from lib.backends import Backend, PostgresBackend, locations, open_backends, scratch, utcnow
from lib.processes import (
    CannedPeer,
    Child,
    ChildExited,
    Dispatcher,
    StartupError,
    free_ports,
    http_get,
    listens,
    metric,
    retry_startup,
    stop_all,
)
from lib.report import first_line, join, log, median, percentile, verdict

PG_SCHEMA = "outboxd_bench_control"
BULK_CHANNEL = "hie"  # its failed messages are retried in bulk
DELIVERY_CHANNEL = "lab"  # its backlog is what the dispatcher delivers meanwhile
ENQUEUE_CHANNEL = "intake"  # the API's enqueues go here (no dispatcher serves it)
OTHER_CHANNEL = "billing"
CHANNELS = (BULK_CHANNEL, DELIVERY_CHANNEL, OTHER_CHANNEL, ENQUEUE_CHANNEL)
FILL_BATCH = 100_000
SPREAD_DAYS = 30
PAGE = 50  # the listing's default limit
TENTH = 10
CONCURRENT = 8  # enqueue requests in flight
BATCH = 500  # messages per enqueue request (the API's most)
CONNECTIONS = 4  # the dispatcher's MLLP connections
SAMPLE_EVERY = 0.2  # seconds between the bench's looks at the dispatcher and the operation
STOP_TIMEOUT = 10.0
TARGET_LATENCY_P99 = 50.0  # ms: stats and list pages
TARGET_ENQUEUE = 10_000.0  # msg/s in batches
TARGET_SLOWDOWN = 2.0  # delivery during a bulk action: at most this much slower
PARTS = frozenset(("reads", "enqueue", "bulk", "search"))  # what --only chooses from
PATIENTS = 200_000  # distinct MRNs of the prefill: each patient has rows / PATIENTS messages
TARGET_SEARCH_P99 = 100.0  # ms: a search's first page


# --- sizes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    rows: int  # messages in the prefilled table
    bulk: int  # failed messages of BULK_CHANNEL (retried in bulk)
    requests: int  # timed requests per latency figure, per run
    single: int  # messages enqueued one per request, sequential
    concurrent: int  # messages enqueued one per request, CONCURRENT in flight
    batches: int  # requests of BATCH messages
    backlog: int  # pending messages of DELIVERY_CHANNEL (the dispatcher's work)
    baseline: float  # seconds of delivery measured before the bulk operation


FULL = Sizes(1_000_000, 100_000, 100, 1_000, 2_000, 20, 350_000, 8.0)
QUICK = Sizes(150_000, 15_000, 30, 100, 200, 4, 90_000, 2.0)


def layout(sizes: Sizes) -> list[tuple[int, str, str]]:
    """The prefill as (per-mille of rows, channel, status), in the order of the buckets
    ``(n * 7919) % 1000`` spreads over the ids (and so over time)."""
    failed = max(1, min(600, round(1000 * sizes.bulk / sizes.rows)))
    backlog = round(1000 * sizes.backlog / sizes.rows)
    small = [
        (10, BULK_CHANNEL, "pending"),
        (5, DELIVERY_CHANNEL, "failed"),
        (10, OTHER_CHANNEL, "pending"),
        (10, OTHER_CHANNEL, "failed"),
    ]
    sent = 1000 - failed - backlog - sum(s[0] for s in small)
    if sent < 100:
        raise ValueError(
            f"--bulk {sizes.bulk:,} and --backlog {sizes.backlog:,} are too large a part of "
            f"--rows {sizes.rows:,}"
        )
    return [
        (failed, BULK_CHANNEL, "failed"),
        (backlog, DELIVERY_CHANNEL, "pending"),
        *small,
        (sent * 4 // 10, BULK_CHANNEL, "sent"),
        (sent * 3 // 10, DELIVERY_CHANNEL, "sent"),
        (sent - sent * 4 // 10 - sent * 3 // 10, OTHER_CHANNEL, "sent"),
    ]


# --- the prefill ---------------------------------------------------------------------------


def _case(buckets: list[tuple[int, str, str]], pick: Callable[[str, str], str]) -> str:
    """A CASE on the bucket ``b`` giving ``pick(channel, status)`` for each part."""
    parts, upto = [], 0
    for share, channel, status in buckets:
        upto += share
        parts.append(f"WHEN b < {upto} THEN {pick(channel, status)}")
    return "CASE " + " ".join(parts) + " END"


def patient(backend: Backend, n: str) -> str:
    """The prefill's patient of row ``n``: n mod PATIENTS, in the backend's SQL."""
    if isinstance(backend, PostgresBackend):
        return f"mod({n}, {PATIENTS})"
    return f"({n} % {PATIENTS})"


def fill_sql(backend: Backend, buckets: list[tuple[int, str, str]]) -> str:
    """One INSERT ... SELECT of rows ``n`` from params 3 to 4; params 1 and 2: the first
    created_at and the step between rows, in microseconds since the epoch. created_at
    grows with n (as with real ids), spread over SPREAD_DAYS; sent ones were sent 2 s
    after, failed ones tried 5 times; pending ones are due. Each payload a small HL7
    message, MSH-10 ``F<n>``, PID-3 ``MRN<n mod PATIENTS>``."""
    p = backend.param
    status = _case(buckets, lambda c, s: f"'{s}'")
    channel = _case(buckets, lambda c, s: f"'{c}'")
    cr = "chr(13)" if isinstance(backend, PostgresBackend) else "char(13)"
    hl7 = (
        "'MSH|^~\\&|BENCH|CLINIC|HIE|HIE|20261123080000||ADT^A04^ADT_A01|F' || n || "
        f"'|P|2.5.1' || {cr} || 'PID|1||MRN' || {patient(backend, 'n')} || "
        f"'^^^CLINIC^MR||Santoso^Budi' || {cr}"
    )
    if isinstance(backend, PostgresBackend):
        bucket = "mod(n * 7919, 1000)"
        micros = f"({p}::bigint + n * {p}::bigint)"
        created = "(to_timestamp(us / 1e6) AT TIME ZONE 'UTC')"
        payload = f"convert_to({hl7}, 'UTF8')"
        later = "(t.created_at + interval '2 seconds')"
    else:
        bucket = "((n * 7919) % 1000)"
        micros = f"({p} + n * {p})"
        # the store's text form: 'YYYY-MM-DD HH:MM:SS.ffffff'
        created = "(datetime(us / 1000000, 'unixepoch') || '.' || printf('%06d', us % 1000000))"
        payload = f"CAST({hl7} AS BLOB)"
        later = "(datetime(t.created_at, '+2 seconds') || substr(t.created_at, 20))"
    numbers = f"SELECT n, {bucket} AS b, {micros} AS us FROM {backend.series}"
    rows = f"SELECT n, b, {created} AS created_at, {payload} AS payload FROM ({numbers}) AS u"
    return (
        'INSERT INTO outboxd_message (channel, kind, "key", payload, status, attempts, '
        "next_attempt_at, last_error, created_at, updated_at, sent_at) "
        f"SELECT {channel}, 'hl7', 'F' || n, payload, {status}, "
        f"CASE {status} WHEN 'sent' THEN 1 WHEN 'failed' THEN 5 ELSE 0 END, "
        "t.created_at, "
        f"CASE {status} WHEN 'failed' THEN 'AE from the peer: PID-3 unknown' END, "
        f"t.created_at, CASE {status} WHEN 'pending' THEN t.created_at ELSE {later} END, "
        f"CASE {status} WHEN 'sent' THEN {later} END "
        f"FROM ({rows}) AS t"
    )


def fields_sql(backend: Backend) -> str:
    """The fields the store keeps for each message as it stores it (what
    ``daemon.hl7.identifiers`` reads from the prefill's payloads), for the messages
    of ids param 1 to param 2 (the prefill's ids are its n)."""
    p = backend.param
    mrn = "'MRN' || " + patient(backend, "id")
    parts = [("'control_id'", '"key"'), ("'message_type'", "'ADT'"),
             ("'message_type'", "'ADT^A04'"), ("'mrn'", mrn)]  # fmt: skip
    selects = " UNION ALL ".join(
        f"SELECT {name}, {value}, id FROM outboxd_message WHERE id BETWEEN {p} AND {p}"
        for name, value in parts
    )
    return f"INSERT INTO outboxd_message_field (name, value, message_id) {selects}"


@dataclass
class Filled:
    seconds: float  # the INSERTs
    settle_seconds: float  # VACUUM ANALYZE (PostgreSQL)
    counts: dict[tuple[str, str], int]  # (channel, status)
    started: str  # the fill's wall time, UTC: rows delivered later were sent after it


def prefill(backend: Backend, sizes: Sizes) -> Filled:
    buckets = layout(sizes)
    sql = fill_sql(backend, buckets)
    fields = fields_sql(backend)
    now = utcnow()
    first = now - timedelta(days=SPREAD_DAYS)
    step = int(SPREAD_DAYS * 86400 * 1e6 / sizes.rows)  # microseconds between rows
    start = int(first.timestamp() * 1e6)
    raw = backend.connect_raw()
    try:
        started = time.perf_counter()
        for low in range(1, sizes.rows + 1, FILL_BATCH):
            high = min(sizes.rows, low + FILL_BATCH - 1)
            raw.execute(backend.begin)
            raw.execute(sql, (start, step, low, high))
            raw.execute(fields, (low, high) * 4)
            raw.execute("COMMIT")
            log(f"  {backend.name}: filled {high:,} of {sizes.rows:,}")
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        backend.settle(vacuum=True)
        settle = time.perf_counter() - started
        rows = raw.execute(
            "SELECT channel, status, COUNT(*) FROM outboxd_message GROUP BY channel, status"
        ).fetchall()
    finally:
        raw.close()
    return Filled(seconds, settle, {(c, s): n for c, s, n in rows}, backend.timestamp(now))


def reset_bulk(backend: Backend, since: Any) -> tuple[int, int]:
    """Between repeats, untimed: the retried messages failed again, the delivered
    backlog pending again (their status events stay)."""
    p = backend.param
    raw = backend.connect_raw()
    try:
        raw.execute(backend.begin)
        failed = raw.execute(
            "UPDATE outboxd_message SET status = 'failed', attempts = 5 "
            f"WHERE channel = {p} AND status = 'pending' AND last_error IS NOT NULL",
            (BULK_CHANNEL,),
        ).rowcount
        pending = raw.execute(
            "UPDATE outboxd_message SET status = 'pending', attempts = 0, sent_at = NULL, "
            "next_attempt_at = created_at "
            f"WHERE channel = {p} AND status = 'sent' AND sent_at > {p}",
            (DELIVERY_CHANNEL, since),
        ).rowcount
        raw.execute("COMMIT")
    finally:
        raw.close()
    backend.settle(vacuum=False)
    return failed, pending


# --- the processes -------------------------------------------------------------------------


class ControlRole(Child):
    """``python -m daemon run control -c CONFIG``: the API on ``port``, health and
    metrics on ``health_port``."""

    def __init__(self, config: Path, port: int, health_port: int, workdir: Path) -> None:
        argv = [sys.executable, "-m", "daemon", "run", "control", "-c", str(config)]
        super().__init__("control", argv, workdir)
        self.port = port
        self.health_port = health_port
        self.unready = "the control role did not answer /healthz and its API port"

    async def answers(self) -> bool:
        try:
            status, body = await asyncio.to_thread(http_get, self.health_port, "/healthz")
        except OSError:
            return False
        # 503 for a problem it serves through (a breaker), not while it starts (the
        # API answers 503 until the database answers and the schema is read)
        return (
            (status == 200 or (status == 503 and '"starting"' not in body))
            and listens(self.pid, self.health_port)
            and listens(self.pid, self.port)
        )


def channel_config(peer_port: int) -> dict[str, Any]:
    return {
        "kind": "mllp",
        "host": "127.0.0.1",
        "port": peer_port,
        "concurrency": CONNECTIONS,
        "batch_size": 100,
        "response_timeout": "10s",
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


async def start(child: Child, children: list[Child]) -> None:
    children.append(child)
    try:
        await child.ready()
    except ChildExited as exc:
        raise StartupError(str(exc)) from exc


# --- the client ----------------------------------------------------------------------------


class Api:
    """Requests to the control role on one keep-alive session."""

    def __init__(self, session: aiohttp.ClientSession, port: int, health_port: int) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{port}"
        self.health = f"http://127.0.0.1:{health_port}"

    async def get(
        self, path: str, headers: dict[str, str] | None = None, base: str | None = None
    ) -> tuple[float, int, Any, Mapping[str, str]]:
        """(seconds, status, the JSON or the text or None, headers)."""
        started = time.perf_counter()
        async with self.session.get((base or self.base) + path, headers=headers) as response:
            body = await response.read()
        elapsed = time.perf_counter() - started
        if response.status >= 400:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        data: Any = None
        if body and response.content_type == "application/json":
            data = json.loads(body)
        elif body:
            data = body.decode()
        return elapsed, response.status, data, response.headers

    async def post(self, path: str, payload: Any) -> tuple[float, int, Any, Mapping[str, str]]:
        started = time.perf_counter()
        async with self.session.post(self.base + path, json=payload) as response:
            body = await response.read()
        elapsed = time.perf_counter() - started
        if response.status >= 400:
            raise RuntimeError(f"POST {path}: {response.status} {body[:300]!r}")
        return elapsed, response.status, json.loads(body) if body else None, response.headers


async def timings(
    count: int, request: Callable[[], Awaitable[tuple[float, int, Any, Mapping[str, str]]]]
) -> tuple[list[float], dict[int, int]]:
    """Seconds of ``count`` sequential requests (after 3 untimed), and the statuses."""
    for _ in range(3):
        await request()
    seconds: list[float] = []
    statuses: dict[int, int] = {}
    for _ in range(count):
        elapsed, status, _, _ = await request()
        seconds.append(elapsed)
        statuses[status] = statuses.get(status, 0) + 1
    return seconds, statuses


# --- figures -------------------------------------------------------------------------------


@dataclass
class Figure:
    backend: str
    name: str
    value: float
    unit: str
    target: str = ""
    verdict: str = ""  # met, MISSED, or empty when there is no target
    note: str = ""
    runs: list[float] = field(default_factory=list)


@dataclass
class Collected:
    """Per figure name: one value per run, and notes."""

    values: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: float, note: str = "") -> None:
        self.values.setdefault(name, []).append(value)
        if note:
            self.notes[name] = note

    def latency(self, name: str, seconds: list[float], note: str = "") -> None:
        self.add(f"{name} p50", median(seconds) * 1000, note)
        self.add(f"{name} p99", percentile(seconds, 99) * 1000, note)


def targets(name: str, value: float) -> tuple[str, str]:
    if name.startswith("search ") and name.endswith(" p99"):
        return f"< {TARGET_SEARCH_P99:g} ms", verdict(value < TARGET_SEARCH_P99)
    if name.endswith(" p99") and (name.startswith("GET /api/v1/stats") or "page" in name):
        return f"< {TARGET_LATENCY_P99:g} ms", verdict(value < TARGET_LATENCY_P99)
    if name.startswith("enqueue, batches"):
        return f"> {TARGET_ENQUEUE:,.0f}", verdict(value > TARGET_ENQUEUE)
    if name == "delivery slowdown during bulk":
        return f"<= {TARGET_SLOWDOWN:g} x", verdict(value <= TARGET_SLOWDOWN)
    return "", ""


UNITS = {"p50": "ms", "p99": "ms"}


def figures_of(backend: str, collected: Collected, units: dict[str, str]) -> list[Figure]:
    out = []
    for name, runs in collected.values.items():
        value = median(runs)
        unit = units.get(name) or UNITS.get(name.rsplit(" ", 1)[-1], "")
        target, met = targets(name, value)
        out.append(
            Figure(backend, name, value, unit, target, met, collected.notes.get(name, ""), runs)
        )
    return out


# --- the measurements ----------------------------------------------------------------------


async def read_side(api: Api, sizes: Sizes, into: Collected) -> None:
    n = sizes.requests
    seconds, _ = await timings(n, lambda: api.get("/api/v1/stats"))
    into.latency("GET /api/v1/stats", seconds, f"{n} requests")
    _, _, _, headers = await api.get("/api/v1/stats")
    tag = headers.get("ETag", "")
    seconds, statuses = await timings(n, lambda: api.get("/api/v1/stats", {"If-None-Match": tag}))
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    into.latency("GET /api/v1/stats If-None-Match", seconds, f"{n} requests; answers {shown}")

    failed = f"/api/v1/messages?channel={BULK_CHANNEL}&status=failed"
    seconds, _ = await timings(n, lambda: api.get(failed))
    into.latency("list hie failed, first page", seconds, f"{n} requests, {PAGE} items")
    for label, path in (
        ("", failed),
        (" since=", f"{failed}&since={quote((utcnow() - timedelta(days=7)).isoformat())}"),
    ):
        _, _, _, headers = await api.get(path)
        tag = headers.get("ETag", "")
        seconds, statuses = await timings(n, lambda p=path, t=tag: api.get(p, {"If-None-Match": t}))
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        into.latency(
            f"list hie failed, page 1,{label} If-None-Match",
            seconds,
            f"answers {shown}" + ("; a fixed since" if label else "; since: now - 7 days"),
        )
    cursor = None
    for _ in range(TENTH - 1):
        path = failed + (f"&cursor={cursor}" if cursor else "")
        _, _, page, _ = await api.get(path)
        cursor = page["next"]
        if cursor is None:
            raise RuntimeError(f"fewer than {TENTH} pages of failed {BULK_CHANNEL} messages")
    tenth = f"{failed}&cursor={cursor}"
    seconds, _ = await timings(n, lambda: api.get(tenth))
    into.latency("list hie failed, tenth page", seconds, f"{n} requests, cursor from page 9")
    seconds, _ = await timings(n, lambda: api.get("/api/v1/messages"))
    into.latency("list unfiltered, first page", seconds, f"{n} requests, the last 7 days")
    seconds, _ = await timings(n, lambda: api.get("/metrics", base=api.health))
    into.latency("GET /metrics (control, health port)", seconds, f"{n} scrapes")


async def search_side(api: Api, sizes: Sizes, into: Collected) -> None:
    """A search's first page (50 items), each request another value where there are
    several to ask for."""
    n = sizes.requests
    patients = min(PATIENTS, sizes.rows)
    step = max(1, patients // (n + 3))

    def rotating(template: str) -> Callable[[], Awaitable[Any]]:
        values = iter(range(10**6))

        def request() -> Awaitable[Any]:
            value = 1000 + (next(values) * step) % max(1, patients - 1000)
            return api.get(template.format(value))

        return request

    rows_per_patient = sizes.rows // patients
    cases: list[tuple[str, Callable[[], Awaitable[Any]], str]] = [
        ("search q=MRN<n> (rare text)", rotating("/api/v1/messages?q=MRN{}"),
         f"~{rows_per_patient * 11} payloads hold it (MRNn, MRNn0..9)"),
        ("search q=Santoso (in every payload)",
         lambda: api.get("/api/v1/messages?q=Santoso"), f"{sizes.rows:,} match"),
        ("search q=Santoso&channel=hie&status=failed",
         lambda: api.get(f"/api/v1/messages?q=Santoso&channel={BULK_CHANNEL}&status=failed"),
         f"{sizes.bulk:,} match"),
        ("search q=no-such-text (none)", lambda: api.get("/api/v1/messages?q=no-such-text"),
         "0 match"),
        ("search mrn=MRN<n> (field)", rotating("/api/v1/messages?mrn=MRN{}"),
         f"~{rows_per_patient} match"),
        ("search control_id=F<n> (field)", rotating("/api/v1/messages?control_id=F{}"),
         "1 match"),
        ("search message_type=ADT^A04 (field)",
         lambda: api.get("/api/v1/messages?message_type=ADT%5EA04"),
         f"{sizes.rows:,} match"),
    ]  # fmt: skip
    for name, request, note in cases:
        seconds, _ = await timings(n, request)
        into.latency(f"{name}, first page", seconds, f"{n} requests, {PAGE} items; {note}")


def hl7_text(key: str) -> str:
    return (
        f"MSH|^~\\&|BENCH|CLINIC|HIE|HIE|20261123080000||ADT^A04^ADT_A01|{key}|P|2.5.1\r"
        f"PID|1||MRN{key}^^^CLINIC^MR||Santoso^Budi\r"
    )


def new_message(key: str) -> dict[str, Any]:
    return {"channel": ENQUEUE_CHANNEL, "key": key, "payload": hl7_text(key)}


async def enqueue_side(api: Api, sizes: Sizes, run: int, into: Collected) -> None:
    async def one(key: str) -> None:
        _, status, _, _ = await api.post("/api/v1/messages", new_message(key))
        if status != 201:
            raise RuntimeError(f"enqueue of {key}: {status}, not 201")

    started = time.perf_counter()
    for i in range(sizes.single):
        await one(f"R{run}S{i}")
    into.add(
        "enqueue, 1 per request, sequential",
        sizes.single / (time.perf_counter() - started),
        f"{sizes.single:,} msgs",
    )

    keys = iter(f"R{run}C{i}" for i in range(sizes.concurrent))

    async def worker() -> None:
        for key in keys:
            await one(key)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENT)))
    into.add(
        f"enqueue, 1 per request, {CONCURRENT} in flight",
        sizes.concurrent / (time.perf_counter() - started),
        f"{sizes.concurrent:,} msgs",
    )

    bodies = [
        {"messages": [new_message(f"R{run}B{b}-{i}") for i in range(BATCH)]}
        for b in range(sizes.batches)
    ]
    started = time.perf_counter()
    for body in bodies:
        _, status, answer, _ = await api.post("/api/v1/messages", body)
        if status != 201 or len(answer["items"]) != BATCH:
            raise RuntimeError(f"batch enqueue: {status}")
    count = sizes.batches * BATCH
    into.add(
        f"enqueue, batches of {BATCH}",
        count / (time.perf_counter() - started),
        f"{count:,} msgs in {sizes.batches} requests, sequential",
    )


@dataclass
class Sample:
    at: float  # monotonic
    delivered: float
    sends: float
    send_seconds: float


async def sample(dispatcher: Dispatcher) -> Sample:
    text = await dispatcher.metrics()
    labels = {"channel": DELIVERY_CHANNEL}
    return Sample(
        time.monotonic(),
        metric(text, "outboxd_deliveries_total", **labels, result="delivered"),
        metric(text, "outboxd_send_duration_seconds_count", **labels),
        metric(text, "outboxd_send_duration_seconds_sum", **labels),
    )


def rate_between(a: Sample, b: Sample) -> tuple[float, float]:
    """(delivered/s, mean send ms) from sample a to sample b."""
    rate = (b.delivered - a.delivered) / max(1e-9, b.at - a.at)
    sends = b.sends - a.sends
    mean = (b.send_seconds - a.send_seconds) / sends * 1000 if sends else 0.0
    return rate, mean


@dataclass
class BulkRun:
    request_ms: float  # the POST that started the operation
    seconds: float  # POST -> the operation seen not running
    done: int
    state: str
    rate_before: float
    rate_during: float
    send_before: float
    send_during: float
    covered: float  # the part of the operation's time the backlog lasted


async def bulk_run(
    backend: Backend, api: Api, sizes: Sizes, config: Path, workdir: Path, backlog: int
) -> BulkRun:
    children: list[Child] = []
    base = free_ports(1)
    cfg = json.loads(config.read_text())
    cfg["channels"] = {DELIVERY_CHANNEL: cfg["channels"][DELIVERY_CHANNEL]}
    cfg["roles"]["dispatcher"] = {"base_port": base, "drain_timeout": "1s"}
    dispatch_config = write_config(workdir / f"dispatcher-{base}.yaml", cfg)
    dispatcher = Dispatcher(dispatch_config, 0, base, workdir)
    try:
        await start(dispatcher, children)
        deadline = time.monotonic() + 30
        while (await sample(dispatcher)).delivered < 1000:  # warmed up
            dispatcher.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the dispatcher delivered nothing in 30 s")
            await asyncio.sleep(SAMPLE_EVERY)
        await asyncio.sleep(1.0)
        first = await sample(dispatcher)
        await asyncio.sleep(sizes.baseline)
        before = await sample(dispatcher)
        rate_before, send_before = rate_between(first, before)
        left = backlog - before.delivered
        if left < rate_before * 2:
            raise RuntimeError(
                f"the backlog is nearly delivered before the bulk ({left:,.0f} left)"
            )

        body = {"filter": {"channel": BULK_CHANNEL, "status": ["failed"]}}
        started = time.monotonic()
        request_seconds, status, answer, headers = await api.post("/api/v1/messages/retry", body)
        if status != 202 or "Location" not in headers:
            raise RuntimeError(f"bulk retry answered {status}: {str(answer)[:200]}")
        location = headers["Location"]
        at_start = await sample(dispatcher)
        last_good = at_start
        while True:
            _, _, op, _ = await api.get(location)
            now = await sample(dispatcher)
            if backlog - now.delivered > CONNECTIONS * 200:  # the dispatcher still had work
                last_good = now
            if op["state"] != "running":
                break
            dispatcher.check()
            if time.monotonic() - started > 600:
                raise RuntimeError(f"the bulk operation was still running after 600 s: {op}")
            await asyncio.sleep(SAMPLE_EVERY)
        seconds = time.monotonic() - started
        rate_during, send_during = rate_between(at_start, last_good)
        covered = (last_good.at - at_start.at) / max(1e-9, now.at - at_start.at)
    finally:
        await stop_all(children, STOP_TIMEOUT)
    return BulkRun(
        request_seconds * 1000,
        seconds,
        int(op["done"]),
        op["state"],
        rate_before,
        rate_during,
        send_before,
        send_during,
        covered,
    )


def bulk_figures(runs: list[BulkRun], into: Collected) -> None:
    for r in runs:
        note = f"{r.done:,} msgs, batches of 1,000, each its own transaction; state {r.state}"
        into.add("bulk retry by filter, until finished", r.seconds, note)
        into.add("bulk retry, msgs/s", r.done / r.seconds)
        into.add(
            "bulk retry, POST -> 202",
            r.request_ms,
            "counts the matches (a whole channel: its tallies)",
        )
        into.add(
            "delivery before bulk (dispatcher)",
            r.rate_before,
            f"1 dispatcher x {CONNECTIONS} conn, canned MLLP peer; "
            f"mean send {r.send_before:.2f} ms",
        )
        covered = "" if r.covered > 0.98 else f"; the backlog lasted {r.covered:.0%} of it"
        into.add(
            "delivery during bulk (dispatcher)",
            r.rate_during,
            f"mean send {r.send_during:.2f} ms; no claim latency metric{covered}",
        )
        into.add(
            "delivery slowdown during bulk",
            r.rate_before / max(1e-9, r.rate_during),
            "before / during",
        )


UNIT_OF = {
    "bulk retry by filter, until finished": "s",
    "bulk retry, msgs/s": "msg/s",
    "bulk retry, POST -> 202": "ms",
    "delivery before bulk (dispatcher)": "msg/s",
    "delivery during bulk (dispatcher)": "msg/s",
    "delivery slowdown during bulk": "x",
}


async def bench_backend(
    backend: Backend,
    sizes: Sizes,
    repeat: int,
    tmp: Path,
    setup: dict[str, str],
    parts: frozenset[str] = PARTS,
) -> list[Figure]:
    workdir = Path(tempfile.mkdtemp(prefix=f"{backend.name}-", dir=tmp))
    log(f"{backend.name}: migrating and filling {sizes.rows:,} rows")
    await asyncio.to_thread(backend.reset)
    filled = await asyncio.to_thread(prefill, backend, sizes)
    shown = ", ".join(f"{c}/{s} {n:,}" for (c, s), n in sorted(filled.counts.items()))
    log(f"  {backend.name}: {filled.seconds:.1f} s (+ {filled.settle_seconds:.1f} s): {shown}")
    setup[f"{backend.name} fill"] = (
        f"{sizes.rows:,} rows in {filled.seconds:.1f} s "
        f"({sizes.rows / filled.seconds:,.0f} rows/s, not counted)"
        + (
            f", VACUUM ANALYZE {filled.settle_seconds:.1f} s"
            if filled.settle_seconds > 0.05
            else ""
        )
        + f": {shown}"
    )
    units = dict(UNIT_OF)
    collected = Collected()
    children: list[Child] = []
    failure: Figure | None = None
    try:
        peer = CannedPeer(workdir)
        await start(peer, children)
        ports = free_ports(2)
        config = write_config(
            workdir / "control.yaml",
            {
                "database": backend.url,
                "channels": {name: channel_config(peer.port) for name in CHANNELS},
                "control": {"port": ports},
                "roles": {"control": {"base_port": ports + 1}},
                "logging": {"level": "INFO"},
            },
        )
        control = ControlRole(config, ports, ports + 1, workdir)
        await start(control, children)
        connector = aiohttp.TCPConnector(limit=CONCURRENT * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            api = Api(session, ports, ports + 1)
            for run in range(repeat):
                if "reads" in parts:
                    log(f"{backend.name}: run {run + 1}: reads, {sizes.requests} requests each")
                    await read_side(api, sizes, collected)
                if "search" in parts:
                    log(f"{backend.name}: run {run + 1}: search, {sizes.requests} requests each")
                    await search_side(api, sizes, collected)
                if "enqueue" not in parts:
                    continue
                log(f"{backend.name}: run {run + 1}: enqueue")
                await enqueue_side(api, sizes, run, collected)
                for name in collected.values:
                    if name.startswith("enqueue"):
                        units[name] = "msg/s"
                control.check()
            bulk: list[BulkRun] = []
            try:
                if "bulk" in parts:
                    await bulk_runs(backend, api, sizes, repeat, config, workdir, filled, bulk)
            except Exception as exc:  # the figures so far are kept
                log(f"{backend.name}: bulk FAILED: {exc}")
                failure = Figure(backend.name, "failed", 0, "", note=join("bulk", first_line(exc)))
            bulk_figures(bulk, collected)
            control.check()
    finally:
        await stop_all(children, STOP_TIMEOUT)
    return [*figures_of(backend.name, collected, units), *([failure] if failure else [])]


async def bulk_runs(
    backend: Backend,
    api: Api,
    sizes: Sizes,
    repeat: int,
    config: Path,
    workdir: Path,
    filled: Filled,
    bulk: list[BulkRun],
) -> None:
    failed = filled.counts.get((BULK_CHANNEL, "failed"), 0)
    backlog = filled.counts.get((DELIVERY_CHANNEL, "pending"), 0)
    for run in range(repeat):
        if run:
            again = await asyncio.to_thread(reset_bulk, backend, filled.started)
            log(f"  {backend.name}: put back {again[0]:,} failed, {again[1]:,} pending")
        log(f"{backend.name}: run {run + 1}: bulk retry of {failed:,} during delivery")
        result = await retry_startup(
            "bulk", lambda: bulk_run(backend, api, sizes, config, workdir, backlog)
        )
        log(
            f"  {result.seconds:.1f} s; delivery {result.rate_before:,.0f} -> "
            f"{result.rate_during:,.0f} msg/s"
        )
        bulk.append(result)


# --- output and command line ---------------------------------------------------------------


def format_table(facts: dict[str, str], setup: dict[str, str], figures: Sequence[Figure]) -> str:
    lines = report.heading("outboxd control API benchmark", facts, setup)
    header = f"{'backend':<8} {'figure':<44} {'value':>9} {'unit':<5}"
    lines += ["", f"{header} {'target':<18} notes"]
    for f in figures:
        precise = f.unit in ("ms", "x", "s")
        value = report.value_text(f.value, f.unit, precise)
        target = f"{f.target} {f.verdict}".strip()
        runs = (
            "runs " + " ".join(f"{r:,.2f}" if precise else f"{r:,.0f}" for r in sorted(f.runs))
            if len(f.runs) > 1
            else ""
        )
        row = f"{f.backend:<8} {f.name:<44} {value:>9} {f.unit:<5}"
        lines.append(f"{row} {target:<18} {join(f.note, runs)}".rstrip())
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.new_parser(__doc__)
    cli.add_backend_options(parser)
    parser.add_argument(
        "--backend", choices=("sqlite", "postgres", "both"), help="one backend, or both"
    )
    parser.add_argument("--rows", type=int, help="messages in the prefilled table")
    parser.add_argument("--bulk", type=int, help="failed messages retried in bulk")
    parser.add_argument("--backlog", type=int, help="pending messages the dispatcher delivers")
    parser.add_argument("--requests", type=int, help="timed requests per latency figure")
    parser.add_argument(
        "--only",
        metavar="PART[,PART…]",
        help=f"run these parts alone (after the prefill): {', '.join(sorted(PARTS))}",
    )
    cli.add_run_options(parser, "runs per figure, median printed (default 3; --quick 1)")
    cli.add_json_option(parser)
    args = cli.parse(parser, argv)
    if args.backend:
        args.backends = "sqlite,postgres" if args.backend == "both" else args.backend
    if args.only:
        args.only = frozenset(part.strip() for part in args.only.split(","))
        if not args.only or not args.only <= PARTS:
            parser.error(f"--only: parts are {', '.join(sorted(PARTS))}")
    return args


def choose_sizes(args: argparse.Namespace) -> tuple[Sizes, int]:
    sizes = QUICK if args.quick else FULL
    if args.rows:
        sizes = replace(sizes, rows=args.rows)
    if args.bulk:
        sizes = replace(sizes, bulk=args.bulk)
    if args.requests:
        sizes = replace(sizes, requests=args.requests)
    if args.backlog:
        sizes = replace(sizes, backlog=args.backlog)
    layout(sizes)  # a bulk too large for the rows is refused before anything runs
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    return sizes, max(1, repeat)


async def bench(
    backends: Sequence[Backend],
    sizes: Sizes,
    repeat: int,
    tmp: Path,
    setup: dict[str, str],
    parts: frozenset[str] = PARTS,
) -> list[Figure]:
    figures: list[Figure] = []
    for backend in backends:
        try:
            figures += await bench_backend(backend, sizes, repeat, tmp, setup, parts)
        except Exception as exc:  # reported; the other backend still runs
            log(f"{backend.name}: FAILED: {exc}")
            figures.append(Figure(backend.name, "failed", 0, "", note=first_line(exc)))
        finally:
            await asyncio.to_thread(backend.drop)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes, repeat = choose_sizes(args)
    with scratch("outboxd-control-bench-") as tmp:
        backends, pg_skipped = open_backends(
            args.backends.split(","), tmp / "control-bench.db", args.pg, PG_SCHEMA
        )
        facts = report.machine_facts(backends, shared=True)
        setup = {
            "repeat": f"{repeat} (each figure: the median of the runs)",
            "rows": f"{sizes.rows:,}; {sizes.bulk:,} failed on {BULK_CHANNEL} (the bulk retry), "
            f"{sizes.backlog:,} pending on {DELIVERY_CHANNEL} (the dispatcher's backlog)",
            "control role": f"{sys.executable} -m daemon run control (no tokens: admin)",
            "client": "aiohttp, keep-alive, sequential unless stated; latency: request sent -> "
            "body read",
            **locations(backends),
        }
        parts = args.only or PARTS
        if args.only:
            setup["only"] = ", ".join(sorted(args.only))
        started = time.perf_counter()
        figures = asyncio.run(bench(backends, sizes, repeat, tmp, setup, parts))
        if pg_skipped:
            figures.append(Figure("postgres", "skipped", 0, "", note=pg_skipped))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        setup["run time"] = f"{time.perf_counter() - started:.0f} s; load average at end {load}"
    report.print_report(args.json, facts, setup, figures, format_table)
    return 1 if any(f.name == "failed" for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
