"""End to end: two Khanza databases on the real MariaDB (a hospital in Asia/Jakarta,
one in Asia/Makassar), ``outboxd run poller`` and ``outboxd run dispatcher`` as
processes, a BPJS simulator per hospital in this process, a SQLite store.

A day goes by in phases: the morning's visits; the poller restarted while task
times keep coming; both source databases unreachable (DSN pointed at a closed
port by a SIGHUP reload) while more times are typed in, then back. Polls repeat
every 0.3 s throughout. At the end each simulator holds every task exactly once,
in order, with the epoch ms of the local time in its zone; no call was made
twice; and every visit's progress says "sent" with that waktu — except a task
typed in earlier than its predecessor, which is held with the reason.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.views import VisitView
from daemon.sim.bpjs import BpjsSimulator
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.sync import Store
from tests.integration.khanza_db import KhanzaDb, at
from tests.integration.khanza_db import no_rawat as rawat
from tests.support.ports import free_port
from tests.support.processes import DaemonProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CONS_ID = "12345"
SECRET = "s3cr3t-e2e"
USER_KEY = "uk-e2e"
OVERRIDES = {
    # check-in and registration as the admission tasks of new patients
    "1": "SELECT validasi FROM referensi_mobilejkn_bpjs WHERE nobooking = %(kodebooking)s",
    "2": "SELECT tgl_registrasi, jam_reg FROM reg_periksa WHERE no_rawat = %(no_rawat)s",
}

CONFIG = """
database: sqlite:///{store}
timezone: Asia/Jakarta
channels:
{channels}
sources:
{sources}
roles:
  poller: {{base_port: {poller_port}, drain_timeout: 10s}}
  dispatcher: {{base_port: {dispatcher_port}, drain_timeout: 10s}}
control: {{port: {control_port}}}
"""
CHANNEL = """  {name}:
    kind: bpjs_antrean
    base_url: http://127.0.0.1:{port}/antreanrs
    cons_id: "{cons_id}"
    secret: {secret}
    user_key: {user_key}
    predecessor_wait: 0.2s
    retry: {{backoff: 0.2s, max_backoff: 1s}}
"""
SOURCE = """  {name}:
    kind: khanza
    dsn: {dsn}
    channel: {channel}
    timezone: {zone}
    interval: 0.3s
    max_backoff: 1s
    lookback_days: 1
    jkn_only: {jkn_only}
    connect_timeout: 2s
    read_timeout: 5s
    timeout: 10s
    queries: {queries}
"""


@dataclass
class Hospital:
    """One source: its Khanza database, zone, simulator, and what BPJS should hold."""

    name: str
    zone: ZoneInfo
    jkn_only: bool
    db: KhanzaDb
    prefix: str  # of its booking codes: visits are kept by kodebooking in one store
    day: date = date.min  # today in its zone, when the test starts
    sim: BpjsSimulator | None = None
    expected: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def kb(self, visit: str) -> str:
        return f"{self.prefix}-{visit}"

    def ms(self, hhmm: str) -> int:
        local = datetime.combine(self.day, clock.fromisoformat(hhmm), tzinfo=self.zone)
        return int(local.timestamp() * 1000)

    def expect(self, kb: str, *tasks: tuple[int, str]) -> None:
        self.expected.setdefault(kb, []).extend(tasks)

    def wanted(self) -> dict[str, list[tuple[int, int]]]:
        return {kb: [(n, self.ms(t)) for n, t in tasks] for kb, tasks in self.expected.items()}

    def held(self) -> dict[str, list[tuple[int, int]]]:
        assert self.sim is not None
        return {kb: self.sim.tasks(kb) for kb in self.sim.bookings}


# --- the day's data ------------------------------------------------------------------


def master_data(h: Hospital) -> None:
    db = h.db
    db.poli("ANA", "Anak", bpjs="ANA")
    db.poli("INT", "Penyakit Dalam", bpjs="INT")
    db.doctor("D001", "dr. Ani", bpjs="12345")
    db.doctor("D002", "dr. Budi", bpjs="23456")
    hari = ("SENIN", "SELASA", "RABU", "KAMIS", "JUMAT", "SABTU", "AKHAD")[h.day.weekday()]
    db.schedule("D001", "ANA", hari, "07:00:00", "23:00:00", 40)
    for n in range(1, 8):
        db.patient(f"00000{n}")


def morning(h: Hospital) -> None:
    """Before the poller first runs."""
    db, day = h.db, h.day
    jkn = {"kodepoli": "ANA", "kodedokter": "12345"}
    # V1: a returning patient at the poli
    db.visit(rawat(day, 1), day, "07:50:00", norm="000001", poli="ANA", dokter="D001")
    db.booking(h.kb("V1"), rawat(day, 1), day, norm="000001", angka=1, **jkn)
    db.folder(rawat(day, 1), at(day, "08:00"), at(day, "08:10"))
    h.expect(h.kb("V1"), (3, "08:00"), (4, "08:10"))
    # V2: a new patient: check-in (1) and registration (2) from the overrides
    db.visit(rawat(day, 2), day, "07:40:00", norm="000002", poli="INT", dokter="D002", baru=True)
    db.booking(
        h.kb("V2"),
        rawat(day, 2),
        day,
        norm="000002",
        kodepoli="INT",
        kodedokter="23456",
        baru=True,
        validasi=at(day, "07:30"),
        angka=2,
    )
    db.folder(rawat(day, 2), at(day, "08:05"))
    h.expect(h.kb("V2"), (1, "07:30"), (2, "07:40"), (3, "08:05"))
    # V3: the folder "received" before it was sent: task 4 is held
    db.visit(rawat(day, 3), day, "08:50:00", norm="000003", poli="ANA", dokter="D001")
    db.booking(h.kb("V3"), rawat(day, 3), day, norm="000003", angka=3, **jkn)
    db.folder(rawat(day, 3), at(day, "09:00"), at(day, "08:55"))
    h.expect(h.kb("V3"), (3, "09:00"))
    # V4: cancelled after its folder went out
    db.visit(rawat(day, 4), day, "09:00:00", norm="000004", poli="ANA", dokter="D001")
    db.booking(h.kb("V4"), rawat(day, 4), day, norm="000004", angka=4, **jkn)
    db.folder(rawat(day, 4), at(day, "09:10"))
    db.cancel(h.kb("V4"), "000004", at(day, "09:30"), no_rawat=rawat(day, 4))
    h.expect(h.kb("V4"), (3, "09:10"), (99, "09:30"))
    # V6: examined before the folder was received: task 5 stays held to the end
    db.visit(rawat(day, 6), day, "09:50:00", norm="000006", poli="ANA", dokter="D001")
    db.booking(h.kb("V6"), rawat(day, 6), day, norm="000006", angka=6, **jkn)
    db.folder(rawat(day, 6), at(day, "10:00"), at(day, "10:10"))
    db.exam(rawat(day, 6), day, "10:05:00")
    h.expect(h.kb("V6"), (3, "10:00"), (4, "10:10"))
    # V5: registered on site, paying privately (reported where jkn_only is false)
    db.visit(
        rawat(day, 5),
        day,
        "09:00:00",
        norm="000005",
        poli="ANA",
        dokter="D001",
        kd_pj="UMU",
        no_reg="005",
    )
    db.folder(rawat(day, 5), at(day, "09:15"))
    if not h.jkn_only:
        h.expect(rawat(day, 5), (3, "09:15"))


def midday(h: Hospital) -> None:
    """While the poller restarts: V1 through the pharmacy; V3's folder time corrected."""
    db, day = h.db, h.day
    db.exam(rawat(day, 1), day, "08:30:00")
    db.prescription(
        "RSP1", rawat(day, 1), "D001", written=(day, "08:50:00"), ready=(day, "09:20:00")
    )
    h.expect(h.kb("V1"), (5, "08:30"), (6, "08:50"), (7, "09:20"))
    db.folder(rawat(day, 3), at(day, "09:00"), at(day, "09:05"))
    db.exam(rawat(day, 3), day, "09:20:00")
    h.expect(h.kb("V3"), (4, "09:05"), (5, "09:20"))


def afternoon(h: Hospital) -> None:
    """Typed in while the source database is unreachable for the poller."""
    db, day = h.db, h.day
    db.folder(rawat(day, 2), at(day, "08:05"), at(day, "08:20"))
    db.exam(rawat(day, 2), day, "08:45:00")
    h.expect(h.kb("V2"), (4, "08:20"), (5, "08:45"))
    db.folder(rawat(day, 5), at(day, "09:15"), at(day, "09:25"))
    if not h.jkn_only:
        h.expect(rawat(day, 5), (4, "09:25"))


# --- plumbing ------------------------------------------------------------------------


@pytest.fixture
async def hospitals() -> AsyncIterator[list[Hospital]]:
    pid = os.getpid()
    made = [
        Hospital(
            "rs_wib", ZoneInfo("Asia/Jakarta"), True, KhanzaDb(f"outboxd_khanza_{pid}_wib"), "WIB"
        ),
        Hospital(
            "rs_wita",
            ZoneInfo("Asia/Makassar"),
            False,
            KhanzaDb(f"outboxd_khanza_{pid}_wita"),
            "WITA",
        ),
    ]
    try:
        for h in made:
            h.db.create()
            h.day = datetime.now(h.zone).date()
            h.sim = BpjsSimulator(CONS_ID, SECRET, USER_KEY, timezone=str(h.zone))
            await h.sim.start()
        yield made
    finally:
        for h in made:
            if h.sim is not None:
                await h.sim.stop()
            h.db.drop()


def write_config(
    path: Path,
    store: Path,
    ports: dict[str, int],
    hospitals: list[Hospital],
    dsn: Callable[[Hospital], str],
) -> None:
    assert all(h.sim is not None for h in hospitals)
    channels = "".join(
        CHANNEL.format(
            name=f"bpjs_{h.name}",
            port=h.sim.port,
            cons_id=CONS_ID,  # type: ignore[union-attr]
            secret=SECRET,
            user_key=USER_KEY,
        )
        for h in hospitals
    )
    sources = "".join(
        SOURCE.format(
            name=h.name,
            dsn=dsn(h),
            channel=f"bpjs_{h.name}",
            zone=h.zone,
            jkn_only=str(h.jkn_only).lower(),
            queries=json.dumps(OVERRIDES),
        )
        for h in hospitals
    )
    path.write_text(CONFIG.format(store=store, channels=channels, sources=sources, **ports))


def sent_once_in_order(h: Hospital) -> bool:
    return h.held() == h.wanted()


async def test_a_day_of_two_hospitals_reaches_bpjs_exactly_once_in_order(tmp_path, hospitals):
    store_path = tmp_path / "outboxd.db"
    db = open_database(DatabaseSettings(url=f"sqlite:///{store_path}"))
    migrate(db)
    store = Store(db)
    ports = {
        "poller_port": free_port(),
        "dispatcher_port": free_port(),
        "control_port": free_port(),
    }
    config = tmp_path / "outboxd.yaml"
    write_config(config, store_path, ports, hospitals, lambda h: h.db.url)
    for h in hospitals:
        master_data(h)
        morning(h)

    dispatcher = DaemonProcess(tmp_path, config, "dispatcher")
    poller = DaemonProcess(tmp_path, config, "poller")
    try:
        await dispatcher.start(ports["dispatcher_port"])
        await poller.start(ports["poller_port"])

        # the morning: everything with a time goes, in order; V3's task 4 is held
        for h in hospitals:
            await eventually(lambda h=h: sent_once_in_order(h), f"{h.name}: the morning")
        v3 = visit_of(store, hospitals[0].kb("V3"))
        assert v3 is not None and v3.task_progress["4"] == {
            "status": "held",
            "reason": "task 4 at 08:55 is earlier than task 3 at 09:00",
        }

        # midday: the poller restarts while new times come in
        assert await poller.stop() == 0
        for h in hospitals:
            midday(h)
        poller = DaemonProcess(tmp_path, config, "poller")
        await poller.start(ports["poller_port"])
        for h in hospitals:
            await eventually(lambda h=h: sent_once_in_order(h), f"{h.name}: after the restart")

        # afternoon: the source databases unreachable, then back
        down = free_port()  # nothing listens there: locked for this session, not ephemeral
        write_config(
            config,
            store_path,
            ports,
            hospitals,
            lambda h: f"mysql://root@127.0.0.1:{down}/{h.db.name}",
        )
        poller.signal(signal.SIGHUP)

        async def reported() -> bool:
            status, body = await poller.health()
            failing = [p for p in body["problems"] if "polls in a row failed" in p]
            return status == 503 and len(failing) == 2

        await eventually(reported, "the outage on /healthz")
        failed = {h.name: await _failed_polls(poller, h.name) for h in hospitals}
        for h in hospitals:
            afternoon(h)
        # polls go on failing (three more of each source); nothing is stored meanwhile
        for h in hospitals:

            async def three_more(h: Hospital = h) -> bool:
                return await _failed_polls(poller, h.name) >= failed[h.name] + 3

            await eventually(three_more, f"{h.name}: three more failed polls")
        assert poller.proc is not None and poller.proc.returncode is None
        for h in hospitals:
            assert await poller.metric("outboxd_source_errors_total", source=h.name) >= 3
            assert h.held() != h.wanted()  # the afternoon's times are not out yet
        write_config(config, store_path, ports, hospitals, lambda h: h.db.url)
        poller.signal(signal.SIGHUP)
        for h in hospitals:
            await eventually(lambda h=h: sent_once_in_order(h), f"{h.name}: after the outage")
        await eventually(lambda: _healthy(poller), "a healthy poller")

        # a few more polls of an unchanged day change nothing
        runs = await poller.metric("outboxd_poll_runs_total", source="rs_wib", result="ok")
        await eventually(lambda: _more_runs(poller, runs + 5), "five more polls", timeout=15)
        for h in hospitals:
            assert sent_once_in_order(h)
            check_calls(h)
            await eventually(lambda h=h: _progress_sent(store, h), f"{h.name}: progress")
            check_progress(store, h)
        assert await poller.stop() == 0
        assert await dispatcher.stop() == 0
    except BaseException:
        print("--- poller ---\n" + poller.output())
        print("--- dispatcher ---\n" + dispatcher.output())
        raise
    finally:
        poller.kill()
        dispatcher.kill()
        store.close()


def visit_of(store: Store, kb: str) -> VisitView | None:
    found = store.find_visits(kb)
    return found[0] if found else None


async def _failed_polls(process: DaemonProcess, source: str) -> float:
    """Polls of the source that failed because it could not be read."""
    return await process.metric("outboxd_poll_runs_total", source=source, result="source_error")


async def _healthy(process: DaemonProcess) -> bool:
    status, _ = await process.health()
    return status == 200


async def _more_runs(process: DaemonProcess, at_least: float) -> bool:
    found = await process.metric("outboxd_poll_runs_total", source="rs_wib", result="ok")
    return found >= at_least


def check_calls(h: Hospital) -> None:
    """Each add and task was called for exactly once, and BPJS took each one."""
    assert h.sim is not None
    seen: Counter[tuple[str, str, int | None]] = Counter()
    for call in h.sim.calls:
        body = json.loads(call.body)
        seen[(call.path.rsplit("/", 1)[1], body["kodebooking"], body.get("taskid"))] += 1
        assert (call.status, call.code) == (200, 200), call
    assert set(seen.values()) == {1}, [k for k, n in seen.items() if n > 1]
    assert len(seen) == sum(1 + len(tasks) for tasks in h.expected.values())


def _progress_sent(store: Store, h: Hospital) -> bool:
    for kb, tasks in h.wanted().items():
        visit = visit_of(store, kb)
        if visit is None:
            return False
        for step in ["add", *(str(n) for n, _ in tasks)]:
            if visit.task_progress.get(step, {}).get("status") != "sent":
                return False
    return True


def check_progress(store: Store, h: Hospital) -> None:
    for kb, tasks in h.wanted().items():
        visit = visit_of(store, kb)
        assert visit is not None and visit.source == h.name
        progress = visit.task_progress
        assert progress["add"]["status"] == "sent"
        for n, waktu in tasks:
            entry = progress[str(n)]
            assert (entry["status"], entry["waktu"]) == ("sent", waktu), (kb, n, entry)
    v6 = visit_of(store, h.kb("V6"))
    assert v6 is not None and v6.task_progress["5"] == {
        "status": "held",
        "reason": "task 5 at 10:05 is earlier than task 4 at 10:10",
    }
    assert "5" not in {str(n) for n, _ in h.sim.tasks(h.kb("V6"))}  # type: ignore[union-attr]
