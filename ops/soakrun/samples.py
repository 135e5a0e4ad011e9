"""What the soak samples every few seconds: each process's resident memory and open
file descriptors (from /proc), the database's size and rows, and from the processes'
/metrics the claim time's p99 and the delivery rate over the last interval, the
backlog and the oldest pending message's age."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lib.backends import Backend, PostgresBackend, SqliteBackend
from lib.processes import children
from prometheus_client.parser import text_string_to_metric_families

from daemon.suite.supervisor import Program

CLAIM = "outboxd_claim_duration_seconds"
DELIVERED = "outboxd_deliveries"  # the family's name (the parser strips _total)


@dataclass
class ProcessSample:
    pid: int
    rss_kb: int
    fds: int


@dataclass
class Sample:
    at: float  # seconds since the load started
    processes: dict[str, ProcessSample]  # name -> its figures
    db_bytes: int
    wal_bytes: int  # of which SQLite's WAL file (0 on PostgreSQL)
    messages: int  # rows in outboxd_message
    visits: int  # rows in outboxd_visit
    delivered: float  # deliveries counted by the dispatchers so far (all of them)
    delivery_rate: float | None  # msg/s over the interval before this sample
    claim_p99_ms: float | None  # over the interval's claims
    claims: int  # claims in the interval
    pending: float  # the backlog, from the control role's gauges
    oldest_pending_s: float
    offered: int  # messages the load had enqueued by then (the API's)
    buckets: dict[float, float] = field(default_factory=dict)  # claim times, cumulative
    notes: list[str] = field(default_factory=list)


# --- /proc -------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def process_tree(programs: Iterable[Program]) -> dict[str, int]:
    """Each running program's pid by its name, and its children's (a dispatcher's
    store worker) as ``NAME/child``, ``NAME/child-2`` …"""
    out: dict[str, int] = {}
    for program in programs:
        if not program.pid:
            continue
        out[program.name] = program.pid
        kids = children(program.pid)
        for i, kid in enumerate(kids):
            out[f"{program.name}/child" + (f"-{i + 1}" if i else "")] = kid
    return out


def processes(tree: dict[str, int]) -> dict[str, ProcessSample]:
    out = {}
    for name, pid in tree.items():
        rss, fds = rss_kb(pid), fd_count(pid)
        if rss is not None and fds is not None:
            out[name] = ProcessSample(pid, rss, fds)
    return out


# --- the database --------------------------------------------------------------------------


def database_size(backend: Backend) -> tuple[int, int]:
    """Bytes: the SQLite file with its WAL and shared memory, or every relation of the
    PostgreSQL schema with its indexes and TOAST; and of those, the WAL's."""
    if isinstance(backend, SqliteBackend):
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            path = backend.path.with_name(backend.path.name + suffix)
            sizes[suffix] = path.stat().st_size if path.exists() else 0
        return sum(sizes.values()), sizes["-wal"]
    assert isinstance(backend, PostgresBackend)
    conn = backend.connect_raw()
    try:
        row = conn.execute(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')",
            (backend.schema,),
        ).fetchone()
        return int(row[0]), 0
    finally:
        conn.close()


def row_counts(backend: Backend) -> tuple[int, int]:
    """(messages, visits): rows in the two tables that grow with the traffic."""
    conn = backend.connect_raw()
    try:
        messages = conn.execute("SELECT count(*) FROM outboxd_message").fetchone()[0]
        visits = conn.execute("SELECT count(*) FROM outboxd_visit").fetchone()[0]
        return int(messages), int(visits)
    finally:
        conn.close()


# --- /metrics --------------------------------------------------------------------------------


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except (OSError, urllib.error.URLError):
        return ""


@dataclass
class Scraped:
    buckets: dict[float, float]  # upper bound -> cumulative count, summed
    delivered: float
    pending: float
    oldest_pending_s: float


def read_metrics(dispatcher_texts: Sequence[str], control_text: str) -> Scraped:
    buckets: dict[float, float] = {}
    delivered = 0.0
    for text in dispatcher_texts:
        for family in text_string_to_metric_families(text):
            if family.name == CLAIM:
                for s in family.samples:
                    if s.name == CLAIM + "_bucket":
                        le = float(s.labels["le"])
                        buckets[le] = buckets.get(le, 0.0) + s.value
            elif family.name == DELIVERED:
                delivered += sum(
                    s.value
                    for s in family.samples
                    if s.name.endswith("_total") and s.labels.get("result") == "delivered"
                )
    pending = oldest = 0.0
    for family in text_string_to_metric_families(control_text):
        if family.name == "outboxd_queue_messages":
            pending = sum(s.value for s in family.samples if s.labels.get("status") == "pending")
        elif family.name == "outboxd_queue_oldest_pending_age_seconds":
            oldest = max((s.value for s in family.samples), default=0.0)
    return Scraped(buckets, delivered, pending, oldest)


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """The ``q`` quantile of the observations between two scrapes of a cumulative
    histogram, interpolated within its bucket as Prometheus's histogram_quantile does
    (the +Inf bucket answers the highest finite bound); NaN when there were none."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


class Sampler:
    """Takes one ``Sample`` at a time; remembers the last scrape for the rates."""

    def __init__(self, backend: Backend, dispatcher_ports: Sequence[int], control_port: int):
        self.backend = backend
        self.dispatcher_ports = list(dispatcher_ports)
        self.control_port = control_port
        self.started = time.monotonic()
        self.last: Scraped | None = None
        self.last_at = 0.0
        self.pids: dict[str, int] = {}

    def take(self, programs: Sequence[Program], offered: int) -> Sample:
        at = time.monotonic() - self.started
        tree = process_tree(programs)
        notes = [
            f"{name} is a new process (pid {self.pids[name]} -> {pid})"
            for name, pid in tree.items()
            if name in self.pids and self.pids[name] != pid
        ]
        self.pids.update(tree)
        scraped = read_metrics(
            [scrape(port) for port in self.dispatcher_ports], scrape(self.control_port)
        )
        rate = p99 = None
        claims = 0
        last = self.last
        if last is not None and scraped.delivered >= last.delivered:
            rate = (scraped.delivered - last.delivered) / max(1e-9, at - self.last_at)
            if scraped.buckets:
                inf = float("inf")
                claims = int(scraped.buckets.get(inf, 0) - last.buckets.get(inf, 0))
                value = histogram_quantile(0.99, last.buckets, scraped.buckets)
                p99 = None if value != value else value * 1000  # NaN: no claims
        self.last, self.last_at = scraped, at
        messages, visits = row_counts(self.backend)
        db_bytes, wal_bytes = database_size(self.backend)
        return Sample(
            at=at,
            processes=processes(tree),
            db_bytes=db_bytes,
            wal_bytes=wal_bytes,
            messages=messages,
            visits=visits,
            delivered=scraped.delivered,
            delivery_rate=rate,
            claim_p99_ms=p99,
            claims=claims,
            pending=scraped.pending,
            oldest_pending_s=scraped.oldest_pending_s,
            offered=offered,
            buckets=scraped.buckets,
            notes=notes,
        )
