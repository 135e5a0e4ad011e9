"""Benchmark of the dispatcher end to end: real processes, a real MLLP peer, a real database.

Every run starts from an empty, freshly migrated database (a SQLite file in a temp dir, or
the PostgreSQL schema ``outboxd_bench_dispatch``, dropped afterwards), starts dispatchers
as processes of their own (``sys.executable -m daemon run dispatcher -c FILE
--process-num N``, health and metrics on free ports) and stops them with SIGTERM, then
SIGKILL, however the run ends. Measures:

1. throughput: N preloaded HL7 messages (unique MSH-10, ``Store.enqueue_many``) delivered
   with no rate limit to the canned-ACK simulator running as its own process
   (``python -m daemon.sim.mllp --canned``): SQLite with 1 dispatcher, PostgreSQL with 2,
   4 connections each, for batch sizes 100 and 500. The messages are enqueued due at one
   instant a little ahead (the gate), so every dispatcher is up and idle when the work
   appears (PostgreSQL: a NOTIFY at the gate wakes them). The rate is N / (first claim ->
   last ``sent_at``), both read from the database after the run; the bench polls the count
   of unfinished rows every 50 ms only to see the end. Each figure also shows the CPU the
   processes used during the drain (from /proc: cores busy, and CPU microseconds per
   message, the dispatchers split into their event-loop thread and the rest, i.e. the store
   thread), the mean send time, and how many claims and outcome writes the work took;
2. rate-limit accuracy: a channel with ``rate: 1/s``, then one with ``rate: 50/s``, each
   served by 2 dispatcher processes sharing the limit through the database, with a backlog
   the rate cannot drain. Arrival times are taken at the peer: an MLLP simulator inside
   the bench process (not canned: it keeps every message with its ``time.monotonic()``
   arrival). ``sent_at`` is not used: it is written when the recorder flushes a batch of
   outcomes, after the ACK, so it shows the recorder's batching, not the peer's view;
3. idle latency: one dispatcher idle, then one message enqueued at a time (100-300 ms
   apart): enqueue commit -> arrival at the in-process simulator, on one clock. On
   PostgreSQL a listener of the bench counts the NOTIFYs the enqueues sent.

    .venv/bin/python ops/bench/dispatch.py            # full run, about 10 minutes
    .venv/bin/python ops/bench/dispatch.py --quick    # smoke run, about 1.5 minutes
    .venv/bin/python ops/bench/dispatch.py --only throughput --backends sqlite --concurrency 16

The machine this runs on may be shared and small: every figure says how busy the machine
was, throughput figures are medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import json
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import peewee
import psycopg
from lib import cli, report
from lib.backends import (
    CHANNEL,
    Backend,
    PostgresBackend,
    StoreOnThread,
    locations,
    open_backends,
    scratch,
    utcnow,
)
from lib.processes import (
    CannedPeer,
    Child,
    ChildExited,
    CpuWatch,
    Dispatcher,
    StartupError,
    cpu_watch,
    free_ports,
    retry_startup,
    run_all,
    scrape,
    stop_all,
)
from lib.report import first_line, join, log, median, percentile, verdict

from daemon.bpjs.payloads import AddAntrean, UpdateWaktu
from daemon.domain.messages import NewMessage
from daemon.domain.statuses import PENDING, SENDING, SENT
from daemon.domain.units import parse_rate
from daemon.hl7 import validate
from daemon.resilience.ratelimit import Bucket
from daemon.sim.bpjs import BpjsSimulator
from daemon.sim.mllp import MllpSimulator
from daemon.store.models import read_timestamp
from daemon.store.sql.base import NOTIFY_CHANNEL
from daemon.store.sync import Store

BPJS_CONS_ID, BPJS_SECRET, BPJS_USER_KEY = "1234", "bench-secret", "bench-user-key"
BPJS_ZONE = "Asia/Jakarta"
PG_SCHEMA = "outboxd_bench_dispatch"
SECTIONS = ("throughput", "rate", "latency", "bpjs")
CONCURRENCY = 4  # MLLP connections per dispatcher process
EVENT_LOOP = {"name": "uvloop"}  # roles.dispatcher.event_loop of the runs (--event-loop)
ENQUEUE_BATCH = 500
RATE_BATCH = 100  # the channel's batch_size in the rate runs (the default)
POLL = 0.05  # seconds between the bench's progress polls
DRAIN_TIMEOUT = 1.0  # the dispatchers' drain deadline (sends waiting for a token end there)
STOP_TIMEOUT = DRAIN_TIMEOUT + 5  # SIGTERM to SIGKILL
LATENCY_WARMUP = 3  # first samples dropped: connection set-up
LATENCY_PAUSE = (0.1, 0.3)  # seconds between enqueues, uniformly random
THROUGHPUT_PROCESSES = {"sqlite": 1, "postgres": 2}  # dispatchers per throughput run
TARGET_THROUGHPUT = {"sqlite": 10_000.0, "postgres": 5_000.0}  # msg/s
TARGET_RATE_ERROR = 1.0  # percent
TARGET_LATENCY_P50 = 50.0  # ms


def hl7_message(run: str, number: int) -> tuple[str, bytes]:
    """(MSH-10, payload): a small, valid ADT^A04 in normal form."""
    control = f"{run}-{number:07d}"
    stamp = "20261123080000"
    segments = (
        f"MSH|^~\\&|OUTBOXD-BENCH|CLINIC|HIE|HIE|{stamp}||ADT^A04^ADT_A01|{control}|P|2.5.1",
        f"EVN|A04|{stamp}",
        f"PID|1||MRN{number}^^^CLINIC^MR||Santoso^Budi||19800101|M",
        "PV1|1|O|POLI-UMUM^^^CLINIC",
    )
    return control, ("\r".join(segments) + "\r").encode()


def check_payload() -> int:
    """The payload passes the channel's enqueue check unchanged; returns its size."""
    control, payload = hl7_message("check", 1)
    info = validate(payload)
    if info.payload != payload or info.control_id != control:
        raise RuntimeError("the bench's HL7 message is not in normal form")
    return len(payload)


def messages(run: str, count: int, not_before: datetime | None = None) -> list[NewMessage]:
    out = []
    for i in range(count):
        key, payload = hl7_message(run, i)
        out.append(NewMessage(CHANNEL, key, payload, "hl7", not_before=not_before))
    return out


# --- one run's scaffolding ---------------------------------------------------------------


def write_config(
    path: Path,
    backend: Backend,
    peer_port: int,
    base_port: int,
    batch_size: int = 100,
    concurrency: int = CONCURRENCY,
    rate: str | None = None,
    bpjs_url: str | None = None,
) -> Path:
    channel: dict[str, Any] = {
        "kind": "mllp",
        "host": "127.0.0.1",
        "port": peer_port,
        "concurrency": concurrency,
        "batch_size": batch_size,
        "response_timeout": "10s",
    }
    if bpjs_url:  # the BPJS Antrean channel against the simulator instead
        channel = {
            "kind": "bpjs_antrean",
            "base_url": bpjs_url,
            "cons_id": BPJS_CONS_ID,
            "secret": BPJS_SECRET,
            "user_key": BPJS_USER_KEY,
            "concurrency": concurrency,
            "batch_size": batch_size,
        }
    if rate:
        channel["rate"] = rate
    config = {
        "database": backend.url,
        "channels": {CHANNEL: channel},
        "roles": {
            "dispatcher": {
                "base_port": base_port,
                "drain_timeout": f"{DRAIN_TIMEOUT:g}s",
                "event_loop": EVENT_LOOP["name"],
            }
        },
        "logging": {"level": "INFO"},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@dataclass
class Gate:
    """Messages are enqueued due at one instant, set far enough ahead that the dispatchers
    are up and idle by then; the estimates learn from each run."""

    enqueue_rate: dict[str, float] = field(
        default_factory=lambda: {"sqlite": 10_000.0, "postgres": 3_000.0}
    )
    startup: float = 4.0

    def due_at(self, backend: Backend, count: int) -> datetime:
        ahead = count / self.enqueue_rate[backend.name] * 1.5 + self.startup + 0.5
        return utcnow() + timedelta(seconds=ahead)

    def learn(self, backend: Backend, count: int, enqueue_seconds: float, startup: float) -> None:
        if count and enqueue_seconds > 0:
            self.enqueue_rate[backend.name] = min(
                self.enqueue_rate[backend.name], count / enqueue_seconds
            )
        self.startup = max(2.0, startup * 1.5)


class Run:
    """One measurement: a fresh database, the bench's store, the processes it starts."""

    def __init__(self, backend: Backend, workdir: Path) -> None:
        self.backend = backend
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{backend.name}-", dir=workdir))  # logs
        self.children: list[Child] = []
        self.dispatchers: list[Dispatcher] = []
        self.store = StoreOnThread(backend.bench_url)

    async def close(self) -> None:
        try:
            await self.stop()
        finally:
            await self.store.close()

    async def stop(self) -> None:
        await stop_all(self.children, STOP_TIMEOUT)

    async def preload(self, batch: list[NewMessage], source: str | None = None) -> float:
        """Enqueue in calls of ``ENQUEUE_BATCH`` (as a source's polls do, with their
        visits, when ``source`` is named); returns the seconds it took."""
        started = time.perf_counter()
        for start in range(0, len(batch), ENQUEUE_BATCH):
            chunk = batch[start : start + ENQUEUE_BATCH]
            if source is None:
                await self.store.call(Store.enqueue_many, chunk)
            else:
                await self.store.call(Store.sync_visits, source, {}, chunk)
        elapsed = time.perf_counter() - started
        await asyncio.to_thread(self.backend.settle)
        return elapsed

    async def start_peer(self) -> CannedPeer:
        """The canned simulator, listening."""
        peer = CannedPeer(self.workdir)
        self.children.append(peer)
        try:
            await peer.ready()
        except ChildExited as exc:
            raise StartupError(str(exc)) from exc
        return peer

    async def start_dispatchers(self, count: int, peer_port: int, **channel: Any) -> float:
        """Start ``count`` dispatchers; returns the seconds until all answered /healthz."""
        base = free_ports(count)
        config = write_config(
            self.workdir / f"dispatch-{base}.yaml", self.backend, peer_port, base, **channel
        )
        started = time.monotonic()
        for num in range(count):
            dispatcher = Dispatcher(config, num, base, self.workdir)
            self.children.append(dispatcher)
            self.dispatchers.append(dispatcher)
        try:
            await asyncio.gather(*(d.ready() for d in self.dispatchers))
        except ChildExited as exc:
            raise StartupError(str(exc)) from exc
        return time.monotonic() - started

    async def open_gate(self, due: datetime) -> bool:
        """Sleep until ``due``, then wake the dispatchers; False if it had passed already."""
        wait = (due - utcnow()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait + 0.01)
        await asyncio.to_thread(self.backend.wake)
        return wait > 0

    def check_alive(self) -> None:
        for child in self.children:
            child.check()

    def cpu_watch(self, peer: Child | None) -> CpuWatch:
        return cpu_watch(self.dispatchers, peer, self.backend.server_pids())

    async def scrape(self, name: str, **labels: str) -> list[float]:
        return await scrape(self.dispatchers, name, **labels)


@contextlib.asynccontextmanager
async def fresh_run(backend: Backend, workdir: Path) -> AsyncIterator[Run]:
    """A run on an empty, freshly migrated database; its processes stop when it ends."""
    await asyncio.to_thread(backend.reset)
    run = Run(backend, workdir)
    try:
        yield run
    finally:
        await run.close()


# --- figures -------------------------------------------------------------------------------


@dataclass
class Figure:
    section: str
    backend: str
    name: str
    value: float
    unit: str
    target: str = ""
    verdict: str = ""  # met, MISSED, or empty when there is no target
    note: str = ""
    runs: list[float] = field(default_factory=list)


def skipped(section: str, backend: str, why: str) -> Figure:
    return Figure(section, backend, "skipped", 0, "", note=why)


def failed(section: str, backend: Backend, exc: Exception, what: str = "") -> Figure:
    """A part that raised: the whole error to stderr, its first line in the table."""
    log(f"{backend.name}: {section} {what} FAILED: {exc}")
    return Figure(section, backend.name, "failed", 0, "", note=join(what, first_line(exc)))


# --- 1. throughput -------------------------------------------------------------------------


@dataclass
class Throughput:
    rate: float
    seconds: float
    note: str


async def throughput_run(
    backend: Backend, workdir: Path, gate: Gate, sizes: Sizes, batch_size: int
) -> Throughput:
    count = sizes.count
    async with fresh_run(backend, workdir) as run:
        peer = await run.start_peer()
        due = gate.due_at(backend, count)
        enqueue_seconds = await run.preload(messages("t", count, due))
        startup = await run.start_dispatchers(
            THROUGHPUT_PROCESSES[backend.name],
            peer.port,
            batch_size=batch_size,
            concurrency=sizes.concurrency,
        )
        gate.learn(backend, count, enqueue_seconds, startup)
        watch = await asyncio.to_thread(run.cpu_watch, peer)
        on_time = await run.open_gate(due)
        watch.start()
        await wait_drained(run, count)
        watch.stop()
        sends = await run.scrape("outboxd_send_duration_seconds_count", channel=CHANNEL)
        send_sum = await run.scrape("outboxd_send_duration_seconds_sum", channel=CHANNEL)
        await run.stop()
        stats = await run.store.call(delivery_stats)
        received = peer.received()
    if stats.sent != count:
        raise RuntimeError(f"{stats.sent} of {count} messages were sent")
    seconds = (stats.last_sent - stats.first_claim).total_seconds()
    split = "/".join(f"{s:,.0f}" for s in sends)
    mean_send = sum(send_sum) / max(1, sum(sends)) * 1000
    notes = [
        f"{seconds:.2f} s",
        f"sends per process {split}" if len(sends) > 1 else "",
        f"mean send {mean_send:.2f} ms",
        f"{stats.claims:,} claims, {stats.writes:,} outcome writes "
        f"(avg {count / max(1, stats.writes):.1f} msgs each)",
        watch.note(count),
        "" if received is None or received == count else f"peer received {received:,}",
        "" if on_time else "LATE: dispatchers were not all up when the messages fell due",
    ]
    return Throughput(count / seconds, seconds, join(*notes))


BARE_LOOP = Path(__file__).resolve().with_name("bare_loop.py")


async def bare_run(backend: Backend, workdir: Path, sizes: Sizes, batch_size: int) -> float:
    """msg/s of ``bare_loop.py`` (as many processes as the dispatcher figure uses) on
    the same tables, peer and message count: the reference the figure is a fraction of."""
    count = sizes.count
    async with fresh_run(backend, workdir) as run:
        peer = await run.start_peer()
        await run.preload(messages("b", count))
        argv = [sys.executable, str(BARE_LOOP), "--db", backend.url, "--port", str(peer.port)]
        argv += ["--channel", CHANNEL, "--batch", str(batch_size)]
        argv += ["--concurrency", str(sizes.concurrency), "--event-loop", EVENT_LOOP["name"]]
        copies = THROUGHPUT_PROCESSES[backend.name]
        outputs = await run_all(BARE_LOOP.name, argv, copies, 60 + count / 200)
    results = [json.loads(out) for out in outputs]
    sent = sum(r["sent"] for r in results)
    if sent != count:
        raise RuntimeError(f"the bare loop sent {sent} of {count} messages")
    first = min(r["first"] for r in results if r["sent"])
    return count / (max(r["last"] for r in results) - first)


def remaining(store: Store) -> int:
    Message = store.models.Message
    query = Message.select().where(
        (Message.channel == CHANNEL) & Message.status.in_([PENDING, SENDING])
    )
    return query.count()


async def wait_drained(run: Run, count: int) -> None:
    """Poll until no message is pending or being sent (or a process died)."""
    deadline = time.monotonic() + 60 + count / 200
    while time.monotonic() < deadline:
        if await run.store.call(remaining) == 0:
            return
        run.check_alive()
        await asyncio.sleep(POLL)
    raise RuntimeError(f"the dispatchers did not deliver {count:,} messages in time")


@dataclass
class DeliveryStats:
    first_claim: datetime
    last_sent: datetime
    sent: int
    claims: int  # claim transactions (distinct times of their status events)
    writes: int  # outcome transactions, the same way


def delivery_stats(store: Store) -> DeliveryStats:
    """What the database says about the run."""
    Message, StatusEvent = store.models.Message, store.models.StatusEvent
    events = {
        status: StatusEvent.select(
            peewee.fn.MIN(StatusEvent.at), peewee.fn.COUNT(StatusEvent.at.distinct())
        )
        .where(StatusEvent.to_status == status)
        .tuples()
        .get()
        for status in (SENDING, SENT)
    }
    last, sent = (
        Message.select(peewee.fn.MAX(Message.sent_at), peewee.fn.COUNT(Message.id))
        .where((Message.channel == CHANNEL) & (Message.status == SENT))
        .tuples()
        .get()
    )
    first = events[SENDING][0]
    if first is None or last is None:
        raise RuntimeError("nothing was claimed or sent")
    return DeliveryStats(
        read_timestamp(first), read_timestamp(last), sent, events[SENDING][1], events[SENT][1]
    )


async def bench_throughput(
    backend: Backend, workdir: Path, sizes: Sizes, gate: Gate
) -> list[Figure]:
    """One figure per batch size; one that fails is reported and the next still runs."""
    figures = []
    for batch_size in sizes.batches:
        try:
            figures.append(await throughput_figure(backend, workdir, sizes, gate, batch_size))
        except Exception as exc:
            figures.append(failed("throughput", backend, exc, f"batch {batch_size}"))
    return figures


async def throughput_figure(
    backend: Backend, workdir: Path, sizes: Sizes, gate: Gate, batch_size: int
) -> Figure:
    procs = THROUGHPUT_PROCESSES[backend.name]
    target = TARGET_THROUGHPUT[backend.name]
    label = f"{procs} proc x {sizes.concurrency} conn, batch {batch_size}"
    log(f"{backend.name}: throughput, {label}, {sizes.count:,} messages x {sizes.repeat}")
    results, bare = [], []
    for i in range(sizes.repeat):  # interleaved with the bare loop: the same machine weather
        run = functools.partial(throughput_run, backend, workdir, gate, sizes, batch_size)
        result = await retry_startup(f"run {i + 1}", run)
        log(f"  run {i + 1}: {result.rate:,.0f} msg/s ({result.note})")
        results.append(result)
        reference = functools.partial(bare_run, backend, workdir, sizes, batch_size)
        bare.append(await retry_startup(f"bare loop {i + 1}", reference))
        log(f"  bare loop {i + 1}: {bare[-1]:,.0f} msg/s")
    rates = [r.rate for r in results]
    middle = sorted(results, key=lambda r: r.rate)[len(results) // 2]
    value = median(rates)
    reference_rate = median(bare)
    ratio = value / reference_rate
    return Figure(
        "throughput",
        backend.name,
        label,
        value,
        "msg/s",
        f">= {target:,.0f}; >= 0.5 x bare",
        f"{verdict(value >= target)}; {verdict(ratio >= 0.5)} ({ratio:.2f} x bare)",
        join(
            f"{sizes.count:,} msgs",
            f"bare loop {reference_rate:,.0f} msg/s (median of "
            + " ".join(f"{b:,.0f}" for b in bare)
            + ")",
            middle.note,
        ),
        rates,
    )


# --- 4. BPJS Antrean ---------------------------------------------------------------------------


def bpjs_messages(bookings: int) -> list[NewMessage]:
    """Per booking: antrean/add, then tasks 3, 4, 5 (a returning patient), each after
    the one before, times a second apart today in the simulator's zone."""
    zone = ZoneInfo(BPJS_ZONE)
    now = datetime.now(zone)
    start_ms = int(now.timestamp() * 1000)
    batch: list[NewMessage] = []
    for i in range(bookings):
        kb = f"BENCH{i:07d}"
        add = AddAntrean(
            kodebooking=kb, jenispasien="JKN", nomorkartu="0001234567890", nik="3171000000000001",
            nohp="081200000000", kodepoli="INT", namapoli="Penyakit Dalam", pasienbaru=0,
            norm=f"{i:06d}", tanggalperiksa=now.date().isoformat(), kodedokter=12345,
            namadokter="dr. Bench", jampraktek="00:00-23:59", jeniskunjungan=1,
            nomorreferensi=f"REF{i:07d}", nomorantrean=f"A-{i}", angkaantrean=i + 1,
            estimasidilayani=start_ms, sisakuotajkn=10, kuotajkn=30, sisakuotanonjkn=10,
            kuotanonjkn=30, keterangan="bench",
        )  # fmt: skip
        batch.append(
            NewMessage(
                CHANNEL, f"{kb}:add", add.to_json(), "bpjs.add", group_key=kb, visit=kb,
                step="add",
            )
        )  # fmt: skip
        previous = f"{kb}:add"
        for step, task in enumerate((3, 4, 5), start=1):
            body = UpdateWaktu(kodebooking=kb, taskid=task, waktu=start_ms + step * 1000)
            key = f"{kb}:task:{task}"
            batch.append(
                NewMessage(
                    CHANNEL, key, body.to_json(), "bpjs.updatewaktu", after_key=previous,
                    group_key=kb, visit=kb, step=str(task),
                )
            )  # fmt: skip
            previous = key
    return batch


async def bench_bpjs(backend: Backend, workdir: Path, sizes: Sizes) -> list[Figure]:
    """Calls/s from one dispatcher to the BPJS simulator (in this process), limits off."""
    bookings = max(25, sizes.count // 8)
    count = bookings * 4
    label = f"1 proc x {sizes.concurrency} conn, calls (add + tasks 3-5)"
    log(f"{backend.name}: bpjs, {label}, {count:,} calls")
    sim = BpjsSimulator(BPJS_CONS_ID, BPJS_SECRET, BPJS_USER_KEY, timezone=BPJS_ZONE)
    await sim.start("127.0.0.1", 0)
    try:
        async with fresh_run(backend, workdir) as run:
            await run.preload(bpjs_messages(bookings), source="bench")
            await run.start_dispatchers(
                1, 0, bpjs_url=sim.url(), concurrency=sizes.concurrency, batch_size=500
            )
            await wait_drained(run, count)
            stats = await run.store.call(delivery_stats)
    finally:
        await sim.stop()
    if stats.sent != count:
        raise RuntimeError(f"{stats.sent} of {count} BPJS calls were sent")
    recorded = sum(len(sim.tasks(f"BENCH{i:07d}")) for i in range(bookings))
    if recorded != bookings * 3:
        raise RuntimeError(f"the simulator recorded {recorded} task times, not {bookings * 3}")
    seconds = (stats.last_sent - stats.first_claim).total_seconds()
    value = count / seconds
    note = join(f"{bookings:,} bookings", f"{seconds:.2f} s", "every task recorded once, in order")
    return [Figure("bpjs", backend.name, label, value, "call/s", "-", "", note, [value])]


# --- 2. rate-limit accuracy ------------------------------------------------------------------


@dataclass
class RateResult:
    arrivals: list[float]  # monotonic seconds at the peer
    split: list[float]  # messages delivered per dispatcher
    on_time: bool


async def rate_run(
    backend: Backend,
    workdir: Path,
    gate: Gate,
    rate: str,
    backlog: int,
    duration: float,
    concurrency: int,
) -> RateResult:
    # not canned: the simulator keeps every message with its arrival time
    async with MllpSimulator() as sim, fresh_run(backend, workdir) as run:
        due = gate.due_at(backend, backlog)
        enqueue_seconds = await run.preload(messages("r", backlog, due))
        startup = await run.start_dispatchers(
            2, sim.port, rate=rate, batch_size=RATE_BATCH, concurrency=concurrency
        )
        gate.learn(backend, backlog, enqueue_seconds, startup)
        on_time = await run.open_gate(due)
        await sim.wait_for(1, timeout=30)
        end = sim.received[0].at + duration + 0.5
        while time.monotonic() < end:
            run.check_alive()
            await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))
        split = await run.scrape("outboxd_deliveries_total", channel=CHANNEL, result="delivered")
    return RateResult(sorted(r.at for r in sim.received), split, on_time)


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most arrivals in any half-open window [t, t + width)."""
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


async def bench_rate(
    backend: Backend, workdir: Path, sizes: Sizes, rate_text: str, gate: Gate
) -> list[Figure]:
    rate = parse_rate(rate_text)
    bucket = Bucket.for_rate(rate)
    burst = int(bucket.capacity)
    duration = sizes.rate_duration
    # more than the rate can drain, and more than one process can hold (a claim takes up
    # to batch_size + concurrency), so that both dispatchers send all along
    held = RATE_BATCH + sizes.concurrency
    backlog = max(int(rate.per_second * duration * 1.5) + 50, 3 * held)
    log(f"{backend.name}: rate {rate_text}, 2 dispatchers, {duration:g} s, backlog {backlog:,}")
    result = await retry_startup(
        f"rate {rate_text}",
        lambda: rate_run(backend, workdir, gate, rate_text, backlog, duration, sizes.concurrency),
    )
    times = result.arrivals
    start = times[0]
    window = [t for t in times if t <= start + duration]
    # The bucket starts full: its ``burst`` saved tokens go at once; the steady rate is
    # measured from the next arrival on, as (arrivals - 1) / (last - first).
    steady = window[burst:]
    if len(steady) < 2:
        raise RuntimeError(f"only {len(window)} messages arrived at rate {rate_text}")
    achieved = (len(steady) - 1) / (steady[-1] - steady[0])
    error = (achieved / rate.per_second - 1) * 100
    peak = max_in_window(times)
    limit = rate.per_second + burst
    split = "/".join(f"{s:,.0f}" for s in result.split)
    late = "" if result.on_time else "LATE: dispatchers were not all up when due"
    name = f"rate {rate_text} (burst {burst})"
    return [
        Figure(
            "rate",
            backend.name,
            f"{name} achieved",
            achieved,
            "msg/s",
            f"error <= {TARGET_RATE_ERROR:g}%",
            verdict(abs(error) <= TARGET_RATE_ERROR),
            join(
                f"error {error:+.2f}%",
                f"{len(steady):,} arrivals after the first {burst} (the initial burst), "
                f"over {steady[-1] - steady[0]:.1f} s",
                f"per process {split}",
                late,
            ),
        ),
        Figure(
            "rate",
            backend.name,
            f"{name} in window",
            len(window) / duration,
            "msg/s",
            note=f"{len(window):,} arrivals in the {duration:g} s from the first, burst included",
        ),
        Figure(
            "rate",
            backend.name,
            f"{name} max in any 1 s",
            peak,
            "msgs",
            f"<= {limit:g}",
            verdict(peak <= limit),
            f"{len(times):,} arrivals, sliding 1 s window at the peer",
        ),
    ]


# --- 3. idle latency -------------------------------------------------------------------------


def enqueue_now(store: Store, message: NewMessage) -> float:
    """Enqueue and return ``time.monotonic()`` right after the commit."""
    store.enqueue(message)
    return time.monotonic()


@dataclass
class LatencyResult:
    seconds: list[float]  # enqueue commit -> arrival at the peer
    enqueued: int
    notifications: int | None  # NOTIFYs a listener of the bench saw (PostgreSQL only)


async def count_notifications(url: str, seen: list[int], listening: asyncio.Event) -> None:
    """Count what the dispatchers' doorbell would hear, on a connection of our own."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        listening.set()
        async for _ in conn.notifies():
            seen[0] += 1


async def latency_run(
    backend: Backend, workdir: Path, samples: int, concurrency: int
) -> LatencyResult:
    rand = random.Random(7)
    latencies: list[float] = []
    heard = [0]
    listener: asyncio.Task[None] | None = None
    async with MllpSimulator() as sim, fresh_run(backend, workdir) as run:
        try:
            if isinstance(backend, PostgresBackend):
                listening = asyncio.Event()
                listener = asyncio.create_task(count_notifications(backend.url, heard, listening))
                await asyncio.wait_for(listening.wait(), 10)
            await run.start_dispatchers(1, sim.port, concurrency=concurrency)
            await asyncio.sleep(1.0)  # idle: nothing due
            for i in range(LATENCY_WARMUP + samples):
                key, payload = hl7_message("l", i)
                message = NewMessage(CHANNEL, key, payload, "hl7")
                committed = await run.store.call(enqueue_now, message)
                await sim.wait_for(i + 1, timeout=10)
                arrival = sim.received[-1]
                if arrival.control_id != key:
                    raise RuntimeError(f"expected {key}, the peer got {arrival.control_id}")
                if i >= LATENCY_WARMUP:
                    latencies.append(arrival.at - committed)
                run.check_alive()
                await asyncio.sleep(rand.uniform(*LATENCY_PAUSE))
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
    return LatencyResult(
        latencies, LATENCY_WARMUP + samples, heard[0] if listener is not None else None
    )


async def bench_latency(backend: Backend, workdir: Path, sizes: Sizes) -> list[Figure]:
    how = "LISTEN/NOTIFY" if isinstance(backend, PostgresBackend) else "doorbell"
    log(f"{backend.name}: idle latency ({how}), {sizes.latency_samples} samples")
    result = await retry_startup(
        "latency",
        lambda: latency_run(backend, workdir, sizes.latency_samples, sizes.concurrency),
    )
    latencies = [s * 1000 for s in result.seconds]
    p50 = median(latencies)
    note = join(
        f"{len(latencies)} samples, {LATENCY_PAUSE[0] * 1000:.0f}-{LATENCY_PAUSE[1] * 1000:.0f}"
        f" ms apart, enqueue commit -> peer; min {min(latencies):.1f}, max {max(latencies):.1f}",
        ""
        if result.notifications is None
        else f"NOTIFYs heard by a listener of the bench: {result.notifications} for "
        f"{result.enqueued} enqueues",
    )
    label = f"enqueue->peer ({how})"
    return [
        Figure(
            "latency",
            backend.name,
            f"{label} p50",
            p50,
            "ms",
            f"< {TARGET_LATENCY_P50:g}",
            verdict(p50 < TARGET_LATENCY_P50),
            note,
        ),
        Figure("latency", backend.name, f"{label} p99", percentile(latencies, 99), "ms"),
    ]


# --- sizes, output, command line -----------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    count: int  # messages preloaded per throughput run
    batches: tuple[int, ...]  # channel batch_size values
    rates: tuple[str, ...]
    rate_duration: float  # seconds measured per rate
    latency_samples: int
    repeat: int  # throughput runs per figure
    concurrency: int = CONCURRENCY


FULL = Sizes(40_000, (100, 500), ("1/s", "50/s"), 60.0, 100, 3)
QUICK = Sizes(3_000, (100, 500), ("1/s", "50/s"), 10.0, 20, 1)


def choose_sizes(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    if args.count:
        sizes = replace(sizes, count=args.count)
    if args.batches:
        sizes = replace(sizes, batches=cli.int_list(args.batches))
    if args.repeat:
        sizes = replace(sizes, repeat=max(1, args.repeat))
    if args.concurrency:
        sizes = replace(sizes, concurrency=args.concurrency)
    return sizes


def format_table(facts: dict[str, str], setup: dict[str, str], figures: Sequence[Figure]) -> str:
    lines = report.heading("outboxd dispatcher benchmark", facts, setup)
    header = f"{'section':<10} {'backend':<8} {'figure':<40} {'value':>9} {'unit':<5}"
    lines += ["", f"{header} {'target':<20} notes"]
    for f in figures:
        precise = f.unit == "ms" or (f.unit == "msg/s" and f.value < 100)
        value = report.value_text(f.value, f.unit, precise)
        target = f"{f.target} {f.verdict}".strip()
        row = f"{f.section:<10} {f.backend:<8} {f.name:<40} {value:>9} {f.unit:<5}"
        lines.append(f"{row} {target:<20} {join(report.runs_note(f.runs), f.note)}".rstrip())
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.new_parser(__doc__)
    cli.add_backend_options(parser)
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this part")
    parser.add_argument("--count", type=int, help="messages per throughput run")
    parser.add_argument("--batches", help="channel batch_size values, e.g. 100,500")
    parser.add_argument(
        "--concurrency", type=int, help=f"connections per dispatcher (default {CONCURRENCY})"
    )
    cli.add_run_options(parser, "throughput runs per figure, median printed (default 3)")
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the dispatchers' roles.dispatcher.event_loop (default uvloop, as the config's)",
    )
    cli.add_json_option(parser)
    args = cli.parse(parser, argv)
    EVENT_LOOP["name"] = args.event_loop
    return args


async def bench(
    sizes: Sizes,
    sections: Sequence[str],
    backends: Sequence[Backend],
    pg_skipped: str | None,
    tmp: Path,
) -> list[Figure]:
    """Every section on every backend; a part that fails is reported as a ``failed``
    figure (the error in stderr) and the bench goes on with the next."""
    gate = Gate()
    figures: list[Figure] = []
    for section in SECTIONS:
        if section not in sections:
            continue
        for backend in backends:
            try:
                if section == "throughput":
                    figures += await bench_throughput(backend, tmp, sizes, gate)
                elif section == "rate":
                    for rate in sizes.rates:
                        figures += await bench_rate(backend, tmp, sizes, rate, gate)
                elif section == "bpjs":
                    figures += await bench_bpjs(backend, tmp, sizes)
                else:
                    figures += await bench_latency(backend, tmp, sizes)
            except Exception as exc:  # reported, and the other parts still run
                figures.append(failed(section, backend, exc))
            finally:
                if isinstance(backend, PostgresBackend):
                    await asyncio.to_thread(backend.drop)
        if pg_skipped:
            figures.append(skipped(section, "postgres", pg_skipped))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with scratch("outboxd-dispatch-bench-") as tmp:
        backends, pg_skipped = open_backends(
            args.backends.split(","), tmp / "dispatch-bench.db", args.pg, PG_SCHEMA
        )
        facts = report.machine_facts(backends, shared=True)
        sizes = choose_sizes(args)
        setup = {
            "payload": f"HL7 ADT^A04, {check_payload()} bytes, unique MSH-10",
            "dispatchers": f"{sys.executable} -m daemon run dispatcher; "
            f"{sizes.concurrency} connections each (channel concurrency); "
            f"event loop {EVENT_LOOP['name']}",
            "repeat": f"{sizes.repeat} per throughput figure (the median); rate and latency: one "
            "run each (aggregates of many messages)",
            "peer": "throughput: the canned-ACK simulator, own process; rate and latency: "
            "a simulator in the bench process, recording arrival times",
            "throughput": f"{sizes.count:,} msgs / (first claim -> last sent_at), from the "
            "database; CPU from /proc over the drain: cores busy (CPU us per message)",
            "rate": "achieved = (n - 1) / (last - first) over the arrivals after the first "
            "`burst` (the bucket starts full); max in any 1 s: sliding window, all arrivals",
            **locations(backends),
        }
        started = time.perf_counter()
        sections = args.only or list(SECTIONS)
        figures = asyncio.run(bench(sizes, sections, backends, pg_skipped, tmp))
        setup["run time"] = f"{time.perf_counter() - started:.0f} s"
    report.print_report(args.json, facts, setup, figures, format_table)
    return 1 if any(f.name == "failed" for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
