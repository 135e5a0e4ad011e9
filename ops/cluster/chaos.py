"""Chaos on the whole suite: one host under supervisord on a PostgreSQL of its own,
every role, mixed traffic (HL7 over MLLP, HTTP webhooks, BPJS tasks read by the
poller from a SIMRS Khanza on a MariaDB of its own, a schedule every 2 s), while
programs are SIGKILLed at random, PostgreSQL and MariaDB are restarted, each
partner is down for a while and the suite gets a SIGHUP with a changed config.
Then the faults stop and ``Chaos.verify`` checks what must hold:

- every message is delivered, or failed for the reason its partner gave (the
  MLLP peer refuses one HL7 message in 25 with an AR, "unknown patient"); none
  lost: each HL7 message reached the MLLP peer, each webhook the HTTP sink;
- a message the peer got twice was in flight at a fault (its lease expired, or
  it took more than one attempt);
- every visit's tasks reached BPJS in the order they happened, each once;
- each schedule fire ran once (a second run only after an interrupted one);
- every program is back and ready without anyone touching it.

``ops/chaos.py`` runs it from the command line; ``tests/e2e/test_chaos.py`` runs a
short one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import psycopg

from daemon.config.database import DatabaseSettings
from daemon.domain.errors import StoreError
from daemon.domain.messages import NewMessage
from daemon.sim.bpjs import BpjsSimulator
from daemon.sim.http import HttpSink
from daemon.sim.mllp import MllpSimulator, Rule
from daemon.store.db import open_database
from daemon.store.sync import Store
from ops.cluster.host import Host
from ops.cluster.servers import MariaDbServer, PostgresServer
from tests.integration.khanza_db import KhanzaDb, schema_statements
from tests.support.data import KHANZA_SCHEMA

log = logging.getLogger("outboxd.chaos")
ZONE = ZoneInfo("Asia/Jakarta")
CONS_ID, SECRET, USER_KEY = "12345", "chaos-secret", "chaos-user-key"
TASKS = (3, 4, 5, 6, 7)  # a returning patient's tasks, in the order they happen
FINAL = {"sent", "confirmed", "rejected", "failed", "cancelled"}
REFUSED = "unknown patient"  # what the MLLP peer says of the messages it refuses (AR)
ROLES = ("dispatcher", "poller", "scheduler", "control")


def refused(n: int) -> bool:
    """Whether the MLLP peer refuses HL7 message ``n`` (MSH-10 ``CH{n:07d}``)."""
    return n % 25 == 0


YAML = """\
node: ${{OUTBOXD_NODE}}
database: {db}
timezone: Asia/Jakarta
channels:
  hie:
    kind: mllp
    host: 127.0.0.1
    port: {mllp}
    rate: {rate}/s
    lease: 4s
    response_timeout: 5s
    retry: {{max_attempts: 1000, backoff: 0.5s, max_backoff: 3s}}
    breaker: {{failures: 5, cooldown: 2s}}
  webhook:
    kind: http
    url: http://127.0.0.1:{http}/hook
    lease: 4s
    retry: {{max_attempts: 1000, backoff: 0.5s, max_backoff: 3s}}
    breaker: {{failures: 5, cooldown: 2s}}
  bpjs:
    kind: bpjs_antrean
    base_url: http://127.0.0.1:{bpjs}/antreanrs
    cons_id: "{cons_id}"
    secret: {secret}
    user_key: {user_key}
    rate: 10/s
    ordered: true
    lease: 4s
    predecessor_wait: 0.5s
    retry: {{max_attempts: 1000, backoff: 0.5s, max_backoff: 3s}}
    breaker: {{failures: 5, cooldown: 2s}}
sources:
  rs_chaos:
    kind: khanza
    dsn: mysql://root@127.0.0.1:{mariadb}/sik
    channel: bpjs
    interval: 1s
    max_backoff: 3s
    connect_timeout: 2s
    read_timeout: 5s
    timeout: 10s
schedules:
  tick:
    every: 2s
    job: http
    options:
      url: "http://127.0.0.1:{http}/fire?at={{{{fire}}}}&attempt={{{{attempt}}}}"
      method: POST
      timeout: 5s
roles:
  dispatcher: {{base_port: "${{OUTBOXD_DISPATCHER_PORT}}", drain_timeout: 5s}}
  poller: {{base_port: "${{OUTBOXD_POLLER_PORT}}", drain_timeout: 5s}}
  scheduler: {{base_port: "${{OUTBOXD_SCHEDULER_PORT}}", drain_timeout: 5s, run_lease: 6s,
              sync_interval: 1s}}
  control: {{base_port: "${{OUTBOXD_CONTROL_HEALTH_PORT}}", drain_timeout: 5s}}
control:
  port: ${{OUTBOXD_CONTROL_PORT}}
"""


def hl7(n: int) -> bytes:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return (
        f"MSH|^~\\&|OUTBOXD|CLINIC|HIE|HIE|{stamp}||ADT^A04^ADT_A01|CH{n:07d}|P|2.5.1\r"
        f"EVN|A04|{stamp}\rPID|1||CH-{n}^^^CLINIC^MR||Santoso^Budi||19800101|M\r"
    ).encode()


@dataclass
class Visit:
    n: int
    kodebooking: str
    no_rawat: str
    registered: datetime  # the hospital's wall clock when the patient registered
    written: list[tuple[int, datetime]] = field(default_factory=list)  # (task, local time)


class KhanzaHospital:
    """Returning patients' visits written into Khanza's tables on MariaDB, a step at
    a time, each step at the hospital's wall clock and later than the last."""

    def __init__(self, server: MariaDbServer) -> None:
        self.server = server
        self.db = KhanzaDb("sik")
        self.visits: list[Visit] = []
        self.booked = 0  # visit numbers used, a failed booking's included (never reused)
        self.day = datetime.now(ZONE).date()

    def create(self) -> None:
        admin = self.server.connect()
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE sik CHARACTER SET latin1")
        admin.close()
        self.db.conn = self.server.connect("sik")
        with self.db.conn.cursor() as cursor:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for statement in schema_statements(KHANZA_SCHEMA.read_text()):
                cursor.execute(statement)
        self.db.poli("ANA", "Anak", bpjs="ANA")
        self.db.doctor("D001", "dr. Ani", bpjs="12345")
        hari = ("SENIN", "SELASA", "RABU", "KAMIS", "JUMAT", "SABTU", "AKHAD")[self.day.weekday()]
        self.db.schedule("D001", "ANA", hari, "00:00:00", "23:59:59", 999)
        for n in range(1, 10):
            self.db.patient(f"00000{n}")

    @staticmethod
    def _now(visit: Visit | None = None) -> datetime:
        """The hospital's wall clock, to the second (as Khanza keeps it), a second
        past the visit's last step at least."""
        now = datetime.now(ZONE).replace(tzinfo=None, microsecond=0)
        if visit is not None:
            last = visit.written[-1][1] if visit.written else visit.registered
            now = max(now, last + timedelta(seconds=1))
        return now

    def tick(self, rng: random.Random) -> None:
        """Book a visit now and then; move the visits under way a step. Raises
        what MariaDB raises (down, restarting): the caller tries again."""
        if self.db.conn is None or not self.db.conn.open:
            self.db.conn = self.server.connect("sik")
            with self.db.conn.cursor() as cursor:
                cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        if rng.random() < 0.6 and self.day == self._now().date():  # today's visits only
            self.booked += 1
            n = self.booked
            at = self._now()
            visit = Visit(n, f"CHAOS{n:05d}", f"{self.day:%Y/%m/%d}/{n:06d}", at)
            norm = f"00000{1 + n % 9}"
            self.db.visit(visit.no_rawat, self.day, at.strftime("%H:%M:%S"), norm=norm,
                          poli="ANA", dokter="D001", no_reg=f"{n % 1000:03d}")  # fmt: skip
            self.db.booking(visit.kodebooking, visit.no_rawat, self.day, norm=norm,
                            kodepoli="ANA", kodedokter="12345", angka=n)  # fmt: skip
            self.visits.append(visit)
        for visit in self.visits:
            if len(visit.written) < len(TASKS) and rng.random() < 0.5:
                self._step(visit)

    def _step(self, visit: Visit) -> None:
        task, at = TASKS[len(visit.written)], self._now(visit)
        done = dict(visit.written)
        if task == 3:
            self.db.folder(visit.no_rawat, at)
        elif task == 4:
            self.db.folder(visit.no_rawat, done[3], at)
        elif task == 5:
            self.db.exam(visit.no_rawat, at.date(), at.strftime("%H:%M:%S"))
        elif task == 6:
            self.db.prescription(f"R{visit.n:09d}", visit.no_rawat, "D001",
                                 written=(at.date(), at.strftime("%H:%M:%S")))  # fmt: skip
        else:
            self.db.prescription(
                f"R{visit.n:09d}", visit.no_rawat, "D001",
                written=(done[6].date(), done[6].strftime("%H:%M:%S")),
                ready=(at.date(), at.strftime("%H:%M:%S")),
            )  # fmt: skip
        visit.written.append((task, at))


@dataclass
class Report:
    duration: float
    faults: Counter[str] = field(default_factory=Counter)
    enqueued: Counter[str] = field(default_factory=Counter)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    repeats: int = 0  # messages the MLLP or HTTP peer got more than once
    visits: int = 0
    tasks: int = 0
    fires: int = 0
    settle_seconds: float = 0.0  # from the last fault to everything delivered and ready
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"chaos: {self.duration:g}s of faults: {dict(sorted(self.faults.items()))}",
            f"enqueued: {dict(self.enqueued)}; visits {self.visits}, tasks {self.tasks}",
            f"final statuses: {self.counts}",
            f"repeats at the peers: {self.repeats}; schedule fires: {self.fires}",
            f"settled {self.settle_seconds:.1f}s after the last fault",
            "OK: every check held" if not self.problems else f"PROBLEMS: {self.problems}",
        ]


class Chaos:
    """``await Chaos(venv, duration).run()`` → a ``Report``."""

    def __init__(self, venv: Path, duration: float, seed: int = 1, every: float = 4.0) -> None:
        self.venv = venv
        self.duration = duration
        self.every = every  # seconds between faults, on average
        self.rng = random.Random(seed)
        self.report = Report(duration)
        self.stopping = asyncio.Event()
        self.hl7_n = 0
        self.hook_n = 0

    async def run(self) -> Report:
        base = Path(tempfile.mkdtemp(prefix="outboxd-chaos-"))
        self.pg = PostgresServer()
        self.mariadb = MariaDbServer()
        self.mllp = MllpSimulator(
            [
                Rule(code="AR", text=REFUSED, match=rb"\|CH\d{5}(00|25|50|75)\|"),
                Rule(delay=0.01),
            ]
        )
        self.http = HttpSink()
        self.bpjs = BpjsSimulator(CONS_ID, SECRET, USER_KEY, timezone=str(ZONE))
        self.host: Host | None = None
        try:
            await asyncio.gather(
                asyncio.to_thread(self.pg.create), asyncio.to_thread(self.mariadb.create)
            )
            self.hospital = KhanzaHospital(self.mariadb)
            await asyncio.to_thread(self.hospital.create)
            await self.mllp.start("127.0.0.1", 0)
            await self.http.start("127.0.0.1", 0)
            await self.bpjs.start("127.0.0.1", 0)
            self.ports = {"mllp": self.mllp.port, "http": self.http.port, "bpjs": self.bpjs.port}
            self.rate = 20
            self.host = Host(base / "h", self.venv, "chaos-1", self._yaml())
            await self.host.migrate()
            await self.host.start()
            self.store = Store(open_database(DatabaseSettings.model_validate({"url": self.pg.url})))
            # traffic stops with the faults; a fault under way is seen through (the
            # partner or the database it took down comes back) before the end
            loops = [self._traffic(), self._hospital()]
            await asyncio.gather(
                *(self._until_stopped(c) for c in loops), self._faults(), self._timer()
            )
            started = time.monotonic()
            await self._settle()
            self.report.settle_seconds = time.monotonic() - started
            await self.verify()
            return self.report
        finally:
            if self.host is not None:
                await self.host.shutdown()
            for sim in (self.mllp, self.http, self.bpjs):
                with contextlib.suppress(Exception):
                    await sim.stop()
            with contextlib.suppress(Exception):
                self.store.close()
            await asyncio.to_thread(self.pg.destroy)
            await asyncio.to_thread(self.mariadb.destroy)
            shutil.rmtree(base, ignore_errors=True)

    def _yaml(self) -> str:
        return YAML.format(
            db=self.pg.url, mariadb=self.mariadb.port, rate=self.rate, cons_id=CONS_ID,
            secret=SECRET, user_key=USER_KEY, **self.ports,
        )  # fmt: skip

    async def _timer(self) -> None:
        await asyncio.sleep(self.duration)
        self.stopping.set()

    async def _until_stopped(self, loop: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(loop)
        await self.stopping.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # --- traffic ----------------------------------------------------------------------

    async def _traffic(self) -> None:
        """A few HL7 and webhook messages every half second; an enqueue that meets
        PostgreSQL down is tried again with the same keys (a repeat is a no-op)."""
        while True:
            batch = [NewMessage("hie", f"hl7-{self.hl7_n + i}", hl7(self.hl7_n + i), "hl7")
                     for i in range(3)]  # fmt: skip
            batch.append(NewMessage("webhook", f"hook-{self.hook_n}", b'{"n": 1}', "json"))
            try:
                await asyncio.to_thread(self.store.enqueue_many, batch, actor="chaos")
            except StoreError:
                await asyncio.sleep(0.5)
                continue
            self.hl7_n += 3
            self.hook_n += 1
            self.report.enqueued.update({"hie": 3, "webhook": 1})
            await asyncio.sleep(0.5)

    async def _hospital(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.hospital.tick, self.rng)
            except Exception as exc:  # MariaDB down: the visit's next step waits
                log.info("hospital tick failed: %s", exc)
                with contextlib.suppress(Exception):
                    self.hospital.db.conn.close()
                self.hospital.db.conn = None
            await asyncio.sleep(1.0)

    # --- faults -----------------------------------------------------------------------

    async def _faults(self) -> None:
        faults: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self._kill_program, self._kill_program, self._kill_program,
            self._restart_postgres, self._restart_mariadb, self._partner_down,
            self._partner_down, self._reload,
        ]  # fmt: skip
        # each kind at least once (a program of each role, each partner), then at random
        order: list[Callable[[], Coroutine[Any, Any, None]]] = [
            lambda: self._kill_program("dispatcher"), self._restart_postgres,
            lambda: self._partner_down("mllp"), lambda: self._kill_program("scheduler"),
            self._restart_mariadb, lambda: self._kill_program("poller"), self._reload,
            lambda: self._partner_down("bpjs"), lambda: self._kill_program("control"),
            lambda: self._partner_down("http"),
        ]  # fmt: skip
        while True:
            pause = self.rng.uniform(0.5, 1.5) * self.every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)
            if self.stopping.is_set():
                return
            fault = order.pop(0) if order else self.rng.choice(faults)
            await fault()  # never cancelled half way: what it took down comes back

    async def _kill_program(self, role: str | None = None) -> None:
        assert self.host is not None
        programs = sorted(p for p in self.host.programs if role is None or f":{role}-" in p)
        program = self.rng.choice(programs)
        pid = await self.host.pid(program)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            self.report.faults[f"SIGKILL {program.split(':')[1].rsplit('-', 1)[0]}"] += 1

    async def _restart_postgres(self) -> None:
        await asyncio.to_thread(self.pg.stop, "immediate")
        await asyncio.sleep(self.rng.uniform(1, 4))
        await asyncio.to_thread(self.pg.start)
        self.report.faults["PostgreSQL restarted"] += 1

    async def _restart_mariadb(self) -> None:
        await asyncio.to_thread(self.mariadb.kill)
        await asyncio.sleep(self.rng.uniform(1, 4))
        await asyncio.to_thread(self.mariadb.start)
        self.report.faults["MariaDB restarted"] += 1

    async def _partner_down(self, name: str | None = None) -> None:
        name = name or self.rng.choice(["mllp", "http", "bpjs"])
        sims: dict[str, MllpSimulator | HttpSink | BpjsSimulator] = {
            "mllp": self.mllp, "http": self.http, "bpjs": self.bpjs,
        }  # fmt: skip
        sim = sims[name]
        await sim.stop()
        await asyncio.sleep(self.rng.uniform(2, 6))
        await sim.start("127.0.0.1", self.ports[name])
        self.report.faults[f"{name} partner down"] += 1

    async def _reload(self) -> None:
        """A changed config (hie's rate), and SIGHUP to every program."""
        assert self.host is not None
        self.rate = 25 if self.rate == 20 else 20
        self.host.yaml.write_text(self._yaml())
        await self.host.ctl("signal", "HUP", "outboxd:*")
        self.report.faults["SIGHUP with a changed config"] += 1

    # --- the end ----------------------------------------------------------------------

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg.url) as conn:
            return conn.execute(sql, params).fetchall()

    async def _settle(self, timeout: float = 300.0) -> None:
        """Every program ready, every message in a final status, every visit's
        written tasks at BPJS: waited for, up to ``timeout``."""
        assert self.host is not None
        await self.host.ready(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_ = await asyncio.to_thread(
                self.query, "SELECT count(*) FROM outboxd_message WHERE status NOT IN"
                " ('sent', 'confirmed', 'rejected', 'failed', 'cancelled')",
            )  # fmt: skip
            written = sum(len(v.written) for v in self.hospital.visits)
            held = sum(len(b.tasks) for b in self.bpjs.bookings.values())
            if open_[0][0] == 0 and held >= written:
                return
            await asyncio.sleep(1.0)
        self.report.problems.append(f"not settled in {timeout:g}s")

    async def verify(self) -> None:
        problems = self.report.problems
        assert self.host is not None
        code, out = await self.host.run(
            self.host.bin("outboxd"), "status", "-c", str(self.host.yaml),
            "--supervisor", str(self.host.conf), "--wait", "60", timeout=90,
        )  # fmt: skip
        if code != 0:
            problems.append(f"not every program ready: {out}")
        rows = await asyncio.to_thread(
            self.query, "SELECT channel, status, count(*) FROM outboxd_message GROUP BY 1, 2"
        )
        for channel, status, count in rows:
            self.report.counts.setdefault(channel, {})[status] = count
        # delivered, or failed for the reason the partner gave
        ended = await asyncio.to_thread(
            self.query, "SELECT channel, key, status, last_error FROM outboxd_message"
            " WHERE status NOT IN ('sent', 'confirmed')",
        )  # fmt: skip
        want_failed = {f"hl7-{n}" for n in range(self.hl7_n) if refused(n)}
        failed = {
            key
            for channel, key, status, error in ended
            if channel == "hie" and status == "failed" and REFUSED in (error or "")
        }
        if failed != want_failed:
            problems.append(f"refused by the peer: {sorted(want_failed ^ failed)[:10]} differ")
        bad = [row for row in ended if row[1] not in want_failed]
        if bad:
            problems.append(f"not delivered: {bad[:20]}")
        # none lost
        seen = Counter(r.control_id for r in self.mllp.received)
        missing = {f"CH{n:07d}" for n in range(self.hl7_n)} - set(seen)
        if missing:
            problems.append(f"{len(missing)} HL7 messages never reached the peer")
        hooks = set(self.http.submitted)
        lost = {f"hook-{n}" for n in range(self.hook_n)} - hooks
        if lost:
            problems.append(f"{len(lost)} webhooks never reached the sink: {sorted(lost)[:10]}")
        # repeats only of what was in flight at a fault
        repeated = [cid for cid, n in seen.items() if n > 1]
        self.report.repeats = len(repeated)
        if repeated:
            keys = [f"hl7-{int(str(cid)[2:])}" for cid in repeated]
            unexplained = await asyncio.to_thread(
                self.query,
                "SELECT m.key FROM outboxd_message m WHERE m.channel = 'hie' AND m.key = ANY(%s)"
                " AND m.attempts <= 1 AND NOT EXISTS (SELECT 1 FROM outboxd_status_event e"
                " WHERE e.message_id = m.id AND e.actor = 'lease-expiry')",
                keys,
            )
            if unexplained:
                problems.append(f"sent twice though never in flight at a fault: {unexplained}")
        # every visit's tasks in order, each once, at the times they happened
        for visit in self.hospital.visits:
            if not visit.written:
                continue
            got = self.bpjs.tasks(visit.kodebooking)
            want = [(task, int(at.replace(tzinfo=ZONE).timestamp() * 1000))
                    for task, at in visit.written]  # fmt: skip
            if got != want:
                problems.append(f"{visit.kodebooking}: BPJS holds {got}, the visit was {want}")
            self.report.visits += 1
            self.report.tasks += len(got)
        # each fire once
        runs = await asyncio.to_thread(
            self.query, "SELECT fire_time, attempt, status FROM outboxd_job_run"
        )
        per_fire = Counter(fire for fire, _, _ in runs)
        interrupted = {fire for fire, _, status in runs if status in ("interrupted", "failed")}
        twice = [f for f, n in per_fire.items() if n > 1 and f not in interrupted]
        if twice:
            problems.append(f"fires run twice: {twice}")
        fired = Counter(
            parse_qs(urlsplit(r.path).query)["at"][0]
            for r in self.http.requests if r.path.startswith("/fire")
        )  # fmt: skip
        self.report.fires = len(fired)
        if not fired:
            problems.append("no schedule fire reached the sink")
        # the sink called more than once for a fire only by as many runs of it
        naive = {fire.replace(tzinfo=None) if fire.tzinfo else fire: n
                 for fire, n in per_fire.items()}  # fmt: skip
        extra = {
            at: n for at, n in fired.items()
            if n > naive.get(datetime.fromisoformat(at).astimezone(UTC).replace(tzinfo=None), 0)
        }  # fmt: skip
        if extra:
            problems.append(f"the job called more often than its fires ran: {extra}")


def today() -> date:
    return datetime.now(ZONE).date()


def main_venv() -> Path:
    return Path(sys.executable).parent.parent
