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
import atexit
import bisect
import contextlib
import functools
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import peewee
import psycopg

from daemon.bpjs.payloads import AddAntrean, UpdateWaktu
from daemon.hl7 import validate
from daemon.resilience.ratelimit import Bucket
from daemon.settings import DatabaseSettings
from daemon.sim.bpjs import BpjsSimulator
from daemon.sim.mllp import MllpSimulator
from daemon.store import Store, migrate, open_database, redact_url
from daemon.store.base import NOTIFY_CHANNEL
from daemon.store.models import PENDING, SENDING, SENT, Message, StatusEvent, read_timestamp
from daemon.store.thread import StoreThread
from daemon.store.types import NewMessage
from daemon.units import parse_rate

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
CHANNEL = "bench"
BPJS_CONS_ID, BPJS_SECRET, BPJS_USER_KEY = "1234", "bench-secret", "bench-user-key"
BPJS_ZONE = "Asia/Jakarta"
PG_SCHEMA = "outboxd_bench_dispatch"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
SECTIONS = ("throughput", "rate", "latency", "bpjs")
CONCURRENCY = 4  # MLLP connections per dispatcher process
EVENT_LOOP = {"name": "uvloop"}  # roles.dispatcher.event_loop of the runs (--event-loop)
ENQUEUE_BATCH = 500
RATE_BATCH = 100  # the channel's batch_size in the rate runs (the default)
POLL = 0.05  # seconds between the bench's progress polls
DRAIN_TIMEOUT = 1.0  # the dispatchers' drain deadline (sends waiting for a token end there)
STARTUP_TIMEOUT = 30.0
LATENCY_WARMUP = 3  # first samples dropped: connection set-up
LATENCY_PAUSE = (0.1, 0.3)  # seconds between enqueues, uniformly random
TARGET_SQLITE = 10_000.0  # msg/s, 1 dispatcher
TARGET_PG = 5_000.0  # msg/s, 2 dispatchers
TARGET_RATE_ERROR = 1.0  # percent
TARGET_LATENCY_P50 = 50.0  # ms
LOOPS = "event loops"  # the dispatchers' main threads, where asyncio runs
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(samples)
    rank = -(-len(ordered) * pct // 100)  # ceil
    return ordered[max(1, int(rank)) - 1]


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free loopback ports (bound to port 0 to find one)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports found")


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


# --- databases ---------------------------------------------------------------------------


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class Backend:
    """One database: emptied and migrated before each run."""

    name: str
    url: str  # what the dispatchers get
    bench_url: str  # the bench's own connection
    throughput_processes: int
    target: float

    def reset(self) -> None:
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

    def settle(self) -> None:
        """After a bulk load: what the server would soon do by itself."""

    def wake(self) -> None:
        """Tell idle dispatchers that work is due (what a NOTIFY would)."""

    def server_pids(self) -> list[int]:
        """Database server processes serving the dispatchers (for CPU accounting)."""
        return []

    def version(self) -> str:
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"
    throughput_processes = 1
    target = TARGET_SQLITE

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.url = self.bench_url = f"sqlite:///{self.path}"

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def version(self) -> str:
        return sqlite3.sqlite_version


class PostgresBackend(Backend):
    name = "postgres"
    throughput_processes = 2
    target = TARGET_PG

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.url = with_query(admin_url, options=f"-csearch_path={PG_SCHEMA}")
        self.bench_url = with_query(self.url, application_name="outboxd-bench")
        self._version = self._admin("SHOW server_version")[0]

    def _admin(self, sql: str, url: str | None = None) -> Any:
        with psycopg.connect(url or self.admin_url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchone() if cursor.description else None

    def drop(self) -> None:
        self._admin(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")

    def create(self) -> None:
        self._admin(f"CREATE SCHEMA {PG_SCHEMA}")

    def settle(self) -> None:
        self._admin("VACUUM ANALYZE outboxd_message", self.url)

    def wake(self) -> None:
        self._admin(f"NOTIFY {NOTIFY_CHANNEL}, '{CHANNEL}'")

    def server_pids(self) -> list[int]:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'outboxd'"
            ).fetchall()
        return [row[0] for row in rows]

    def version(self) -> str:
        return self._version


def open_backends(args: argparse.Namespace, tmp: Path) -> tuple[list[Backend], str | None]:
    """The backends to run, and why PostgreSQL was skipped (None when it was not)."""
    backends: list[Backend] = []
    names = args.backends.split(",")
    if "sqlite" in names:
        backends.append(SqliteBackend(tmp / "dispatch-bench.db"))
    if "postgres" in names:
        try:
            backends.append(PostgresBackend(args.pg))
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            skipped = f"{redact_url(args.pg)} did not answer: {reason}"
            log(f"postgres: skipped: {skipped}")
            return backends, skipped
    return backends, None


# --- CPU accounting ------------------------------------------------------------------------


def stat_cpu(path: Path) -> float | None:
    """CPU seconds (user + system) from a /proc stat file; None if unreadable."""
    try:
        after_name = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(after_name[11]) + int(after_name[12])) / TICK


def machine_busy() -> float | None:
    """CPU seconds all cores have spent busy since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK  # all but idle and iowait


@dataclass
class CpuWatch:
    """CPU seconds used by groups of processes (or threads) between ``start`` and ``stop``."""

    groups: dict[str, list[Path]]  # name -> /proc/.../stat files
    wall: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, paths in self.groups.items():
            seconds = [stat_cpu(path) for path in paths]
            if paths and all(s is not None for s in seconds):
                out[name] = sum(s for s in seconds if s is not None)
        machine = machine_busy()
        if machine is not None:
            out["machine"] = machine
        return out

    def start(self) -> None:
        self.wall = time.monotonic()
        self.before = self._sample()

    def stop(self) -> None:
        self.wall = max(1e-9, time.monotonic() - self.wall)
        after = self._sample()
        self.used = {k: after[k] - self.before[k] for k in after if k in self.before}

    def note(self, messages: int) -> str:
        """Cores busy and CPU microseconds per message, per group."""
        if not self.used:
            return ""

        def cost(name: str) -> str:
            return f"{self.used[name] / self.wall:.2f} ({self.used[name] / messages * 1e6:.0f})"

        parts = []
        for name in self.used:
            if name in ("machine", LOOPS):
                continue
            text = f"{name} {cost(name)}"
            if name == "dispatchers" and LOOPS in self.used:
                other = self.used[name] - self.used[LOOPS]
                text += (
                    f" = event loop {cost(LOOPS)}"
                    f" + other threads {other / self.wall:.2f} ({other / messages * 1e6:.0f})"
                )
            parts.append(text)
        if "machine" in self.used:
            parts.append(f"machine {self.used['machine'] / self.wall:.2f}/{os.cpu_count()}")
        return "cores busy (CPU us/msg): " + ", ".join(parts)


# --- processes ---------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a dispatcher's store worker)."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        return [int(c) for task in tasks.iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


_LIVE: set[subprocess.Popen[bytes]] = set()


class ChildExited(RuntimeError):
    """A process of the bench ended while it was needed."""


class StartupError(RuntimeError):
    """The processes of a run did not come up (a port taken meanwhile, say): worth one
    more try with new ports."""


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the listening TCP socket on ``port`` (from /proc;
    True where /proc cannot tell). Free ports are found by binding to port 0, so on a
    shared machine another program may take one before our process does."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return True
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


async def retry_startup(what: str, make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()``; once more if its processes did not come up."""
    try:
        return await make()
    except StartupError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        log(f"  {what}: start-up failed ({first}); once more with new ports")
        return await make()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (an exception escaped a ``finally``): no child outlives the bench."""
    for popen in list(_LIVE):
        if popen.poll() is None:
            popen.kill()


class Child:
    """A process the bench started, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                list(argv), cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        _LIVE.add(self.popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check(self) -> None:
        """Raise if the process has ended: its last line first, then its output."""
        if not self.alive():
            output = self.output().strip()
            last = output.splitlines()[-1] if output else "no output"
            raise ChildExited(f"{self.name} exited {self.popen.returncode}: {last}\n{output}")


async def stop_all(children: Sequence[Child], timeout: float = DRAIN_TIMEOUT + 5) -> None:
    """SIGTERM every child, wait up to ``timeout``, then SIGKILL what is left."""
    for child in children:
        if child.alive():
            child.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(c.alive() for c in children) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for child in children:
        if child.alive():
            log(f"{child.name} did not stop within {timeout:.0f} s: killed")
            child.popen.kill()
        child.popen.wait()
        _LIVE.discard(child.popen)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Dispatcher(Child):
    def __init__(self, config: Path, num: int, base_port: int, workdir: Path) -> None:
        argv = [sys.executable, "-m", "daemon", "run", "dispatcher", "-c", str(config)]
        super().__init__(f"dispatcher-{num}", [*argv, "--process-num", str(num)], workdir)
        self.port = base_port + num

    async def ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until /healthz answers, from this process (the machine may be shared)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                status, _ = await asyncio.to_thread(http_get, self.port, "/healthz")
                if status in (200, 503) and listens(self.pid, self.port):
                    return
            except (OSError, http.client.HTTPException):
                pass
            await asyncio.sleep(0.05)
        raise StartupError(f"{self.name} did not answer /healthz:\n{self.output()}")

    async def metrics(self) -> str:
        return (await asyncio.to_thread(http_get, self.port, "/metrics"))[1]


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    want = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, rest = sample.partition("{")
        got = sorted(rest.rstrip("}").split(",")) if rest else []
        if metric_name == name and got == want:
            return float(value)
    return 0.0


class CannedPeer(Child):
    """``python -m daemon.sim.mllp --canned`` as its own process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_ports()
        argv = [sys.executable, "-m", "daemon.sim.mllp", "--canned", "--keep", "0"]
        super().__init__("sim-mllp", [*argv, "--port", str(self.port)], workdir)

    async def ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if listens(self.pid, self.port):
                return
            await asyncio.sleep(0.05)
        raise StartupError(f"the simulator did not listen:\n{self.output()}")

    def received(self) -> int | None:
        """What the simulator said it received when it stopped."""
        for line in reversed(self.output(2000).splitlines()):
            if "stopped after" in line:
                return int(line.split("stopped after", 1)[1].split()[0])
        return None


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


# --- one run's scaffolding ---------------------------------------------------------------


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
        self.store = Store(open_database(DatabaseSettings(url=backend.bench_url)))
        self.thread = StoreThread(self.store)

    async def close(self) -> None:
        try:
            await stop_all(self.children)
        finally:
            await self.thread.aclose()

    async def preload(self, batch: list[NewMessage]) -> float:
        """Enqueue in calls of ``ENQUEUE_BATCH``; returns the seconds it took."""
        started = time.perf_counter()
        for start in range(0, len(batch), ENQUEUE_BATCH):
            await self.thread.run(self.store.enqueue_many, batch[start : start + ENQUEUE_BATCH])
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
        proc = Path("/proc")
        pids = [d.pid for d in self.dispatchers]
        groups = {
            "dispatchers": [proc / str(pid) / "stat" for pid in pids],
            LOOPS: [proc / str(pid) / "task" / str(pid) / "stat" for pid in pids],
            "store workers": [
                proc / str(child) / "stat" for pid in pids for child in children(pid)
            ],
        }
        if peer is not None:
            groups["sim"] = [proc / str(peer.pid) / "stat"]
        servers = self.backend.server_pids()
        if servers:
            groups["postgres"] = [proc / str(pid) / "stat" for pid in servers]
        groups["bench"] = [proc / str(os.getpid()) / "stat"]
        return CpuWatch(groups)

    async def scrape(self, name: str, **labels: str) -> list[float]:
        texts = await asyncio.gather(*(d.metrics() for d in self.dispatchers))
        return [metric(text, name, **labels) for text in texts]


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


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def skipped(section: str, backend: str, why: str) -> Figure:
    return Figure(section, backend, "skipped", 0, "", note=why)


def failed(section: str, backend: Backend, exc: Exception, what: str = "") -> Figure:
    """A part that raised: the whole error to stderr, its first line in the table."""
    log(f"{backend.name}: {section} {what} FAILED: {exc}")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return Figure(section, backend.name, "failed", 0, "", note=join(what, first))


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
            backend.throughput_processes,
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
        await stop_all(run.children)
        stats = await run.thread.run(delivery_stats, run.store)
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


BARE_LOOP = ROOT / "ops" / "bench" / "bare_loop.py"


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
        procs = [
            await asyncio.create_subprocess_exec(
                *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(backend.throughput_processes)
        ]
        try:
            outputs = await asyncio.wait_for(
                asyncio.gather(*(p.communicate() for p in procs)), 60 + count / 200
            )
        finally:  # none left running, however this ends
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"bare_loop.py exited {proc.returncode}: {err.decode()[-2000:]}")
        results.append(json.loads(out))
    sent = sum(r["sent"] for r in results)
    if sent != count:
        raise RuntimeError(f"the bare loop sent {sent} of {count} messages")
    first = min(r["first"] for r in results if r["sent"])
    return count / (max(r["last"] for r in results) - first)


def remaining(store: Store) -> int:
    query = Message.select().where(
        (Message.channel == CHANNEL) & Message.status.in_([PENDING, SENDING])
    )
    return query.count()


async def wait_drained(run: Run, count: int) -> None:
    """Poll until no message is pending or being sent (or a process died)."""
    deadline = time.monotonic() + 60 + count / 200
    while time.monotonic() < deadline:
        if await run.thread.run(remaining, run.store) == 0:
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
    procs = backend.throughput_processes
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
    value = statistics.median(rates)
    reference_rate = statistics.median(bare)
    ratio = value / reference_rate
    return Figure(
        "throughput",
        backend.name,
        label,
        value,
        "msg/s",
        f">= {backend.target:,.0f}; >= 0.5 x bare",
        f"{verdict(value >= backend.target)}; {verdict(ratio >= 0.5)} ({ratio:.2f} x bare)",
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
        batch.append(NewMessage(CHANNEL, f"{kb}:add", add.to_json(), "bpjs.add", group_key=kb))
        previous = f"{kb}:add"
        for step, task in enumerate((3, 4, 5), start=1):
            body = UpdateWaktu(kodebooking=kb, taskid=task, waktu=start_ms + step * 1000)
            key = f"{kb}:task:{task}"
            batch.append(
                NewMessage(
                    CHANNEL, key, body.to_json(), "bpjs.updatewaktu", after_key=previous,
                    group_key=kb,
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
            await run.preload(bpjs_messages(bookings))
            await run.start_dispatchers(
                1, 0, bpjs_url=sim.url(), concurrency=sizes.concurrency, batch_size=500
            )
            await wait_drained(run, count)
            stats = await run.thread.run(delivery_stats, run.store)
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
                committed = await run.thread.run(
                    enqueue_now, run.store, NewMessage(CHANNEL, key, payload, "hl7")
                )
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
    how = "LISTEN/NOTIFY" if isinstance(backend, PostgresBackend) else "polling"
    log(f"{backend.name}: idle latency ({how}), {sizes.latency_samples} samples")
    result = await retry_startup(
        "latency",
        lambda: latency_run(backend, workdir, sizes.latency_samples, sizes.concurrency),
    )
    latencies = [s * 1000 for s in result.seconds]
    p50 = statistics.median(latencies)
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
        sizes = replace(sizes, batches=tuple(int(b) for b in args.batches.split(",")))
    if args.repeat:
        sizes = replace(sizes, repeat=max(1, args.repeat))
    if args.concurrency:
        sizes = replace(sizes, concurrency=args.concurrency)
    return sizes


def machine_facts(backends: Sequence[Backend]) -> dict[str, str]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    facts = {
        "cpus": f"{os.cpu_count()} (shared machine: other work may run; read medians and ratios)",
        "load average": f"{load} (1, 5, 15 min) at start",
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
    if figure.unit == "ms" or (figure.unit == "msg/s" and figure.value < 100):
        return f"{figure.value:.2f}"
    return f"{figure.value:,.0f}"


def format_table(facts: dict[str, str], setup: dict[str, str], figures: Sequence[Figure]) -> str:
    lines = ["outboxd dispatcher benchmark", ""]
    lines += [f"  {key:<14} {value}" for key, value in {**facts, **setup}.items()]
    header = f"{'section':<10} {'backend':<8} {'figure':<40} {'value':>9} {'unit':<5}"
    lines += ["", f"{header} {'target':<20} notes"]
    for f in figures:
        runs = ""
        if len(f.runs) > 1:
            runs = "median of " + " ".join(f"{r:,.0f}" for r in sorted(f.runs))
        target = f"{f.target} {f.verdict}".strip()
        row = f"{f.section:<10} {f.backend:<8} {f.name:<40} {format_value(f):>9} {f.unit:<5}"
        lines.append(f"{row} {target:<20} {join(runs, f.note)}".rstrip())
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL URL (default {DEFAULT_PG})")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this part")
    parser.add_argument("--count", type=int, help="messages per throughput run")
    parser.add_argument("--batches", help="channel batch_size values, e.g. 100,500")
    parser.add_argument(
        "--concurrency", type=int, help=f"connections per dispatcher (default {CONCURRENCY})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--repeat", type=int, help="throughput runs per figure, median printed (default 3)"
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the dispatchers' roles.dispatcher.event_loop (default uvloop, as the config's)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    EVENT_LOOP["name"] = args.event_loop
    unknown = set(args.backends.split(",")) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
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
    tmp = Path(tempfile.mkdtemp(prefix="outboxd-dispatch-bench-"))
    try:
        backends, pg_skipped = open_backends(args, tmp)
        facts = machine_facts(backends)
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
        }
        setup.update({b.name + " at": redact_url(b.url) for b in backends})
        started = time.perf_counter()
        sections = args.only or list(SECTIONS)
        figures = asyncio.run(bench(sizes, sections, backends, pg_skipped, tmp))
        setup["run time"] = f"{time.perf_counter() - started:.0f} s"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        report = {"machine": facts, "setup": setup, "figures": [asdict(f) for f in figures]}
        print(json.dumps(report, indent=2))
    else:
        print(format_table(facts, setup, figures))
    return 1 if any(f.name == "failed" for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
