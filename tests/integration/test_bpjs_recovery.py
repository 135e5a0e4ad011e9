"""BPJS Antrean as a hospital meets it: a BPJS that lost the bookings it had (a
restart), and a visit cancelled at the counter with no time for it. A Khanza
database on the real MariaDB, ``outboxd run poller`` and ``outboxd run
dispatcher`` as processes, a BPJS simulator in this process, a SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.config.database import DatabaseSettings
from daemon.sim.bpjs import BpjsSimulator
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.models import MODELS, Message, StatusEvent
from daemon.store.sync import Store
from tests.integration.khanza_db import KhanzaDb, at
from tests.integration.khanza_db import no_rawat as rawat
from tests.integration.test_poller_e2e import (
    CONS_ID,
    SECRET,
    USER_KEY,
    Hospital,
    master_data,
    midday,
    morning,
    write_config,
)
from tests.support.ports import free_port
from tests.support.processes import ROOT, DaemonProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
async def suite(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict]:
    """One hospital (``jkn_only`` as the test's parameter), its simulator, the store,
    and the poller and dispatcher running against them."""
    jkn_only = getattr(request, "param", True)
    h = Hospital(
        "rs", ZoneInfo("Asia/Jakarta"), jkn_only, KhanzaDb(f"outboxd_khanza_{os.getpid()}_r"), "R"
    )
    h.db.create()
    h.day = datetime.now(h.zone).date()
    h.sim = BpjsSimulator(CONS_ID, SECRET, USER_KEY, timezone=str(h.zone))
    await h.sim.start()
    store_path = tmp_path / "outboxd.db"
    db = open_database(DatabaseSettings(url=f"sqlite:///{store_path}"))
    migrate(db)
    store = Store(db)
    db.bind(MODELS)  # the model declarations, for this test's own queries
    ports = {
        "poller_port": free_port(),
        "dispatcher_port": free_port(),
        "control_port": free_port(),
    }
    config = tmp_path / "outboxd.yaml"
    write_config(config, store_path, ports, [h], lambda h: h.db.url)
    # one call in flight per booking, as a hospital runs BPJS (README)
    config.write_text(
        config.read_text().replace("kind: bpjs_antrean", "kind: bpjs_antrean\n    ordered: true")
    )
    master_data(h)
    dispatcher = DaemonProcess(tmp_path, config, "dispatcher")
    poller = DaemonProcess(tmp_path, config, "poller")
    try:
        yield {
            "h": h,
            "store": store,
            "config": config,
            "ports": ports,
            "dispatcher": dispatcher,
            "poller": poller,
        }
    finally:
        poller.kill()
        dispatcher.kill()
        store.close()
        await h.sim.stop()
        h.db.drop()


async def start(suite: dict) -> None:
    await suite["dispatcher"].start(suite["ports"]["dispatcher_port"])
    await suite["poller"].start(suite["ports"]["poller_port"])


def statuses(store: Store) -> Counter[str]:
    return Counter(m.status for m in Message.select(Message.status))


async def test_a_bpjs_that_lost_its_bookings_gets_each_chain_again_and_nothing_fails(suite):
    h, store = suite["h"], suite["store"]
    morning(h)
    try:
        await start(suite)
        await eventually(lambda: h.held() == h.wanted(), "the morning at BPJS")
        # BPJS restarts and forgets every booking it had
        h.sim.bookings.clear()
        calls_before = len(h.sim.calls)
        midday(h)  # new times for V1 (tasks 5-7) and V3 (4-5)
        touched = [h.kb("V1"), h.kb("V3")]
        wanted = h.wanted()

        def caught_up() -> bool:
            held = h.held()
            return all(held.get(kb) == wanted[kb] for kb in touched)

        await eventually(caught_up, "V1 and V3 reported again, in order")
        await eventually(
            lambda: statuses(store)["sent"] == Message.select().count(), "every message sent"
        )
        assert statuses(store)["failed"] == 0
        # each of their steps reached BPJS once after the restart: the add and the
        # earlier tasks again (the chain), then the new tasks
        later = h.sim.calls[calls_before:]
        accepted = Counter(
            (json.loads(c.body)["kodebooking"], json.loads(c.body).get("taskid", "add"))
            for c in later
            if c.code == 200
        )
        for kb in touched:
            steps = ["add", *(n for n, _ in wanted[kb])]
            assert [accepted[(kb, s)] for s in steps] == [1] * len(steps), (kb, accepted)
        refused = [c for c in later if c.code == 201]
        assert len(refused) == 2  # one "belum ada" per visit, then the chain went again
        # it is on record: the resent messages' events, the task that asked for it
        add_v1 = Message.get(Message.key == f"{h.kb('V1')}:add")
        events = [
            e.details or {} for e in StatusEvent.select().where(StatusEvent.message == add_v1.id)
        ]
        assert any("resent_before" in d for d in events)
        task5 = Message.get(Message.key == f"{h.kb('V1')}:task:5")
        assert task5.predecessors_resent_at is not None and task5.attempts == 1
    except BaseException:
        print("--- dispatcher ---\n" + suite["dispatcher"].output())
        raise
    finally:
        await suite["poller"].stop()
        await suite["dispatcher"].stop()


@pytest.mark.parametrize("suite", [False], indirect=True)  # on-site visits too
async def test_a_counter_cancellation_reaches_bpjs_at_the_time_it_was_seen(suite, tmp_path):
    h, store = suite["h"], suite["store"]
    db, day = h.db, h.day
    # registered on site for the poli, its folder sent, then cancelled at the counter:
    # reg_periksa.stts = 'Batal', with no time anywhere
    db.visit(rawat(day, 7), day, "07:30:00", norm="000007", poli="ANA", dokter="D001", no_reg="007")
    db.folder(rawat(day, 7), at(day, "07:45"))
    kb = rawat(day, 7)
    try:
        await start(suite)
        await eventually(lambda: [n for n, _ in h.sim.tasks(kb)] == [3], "the folder at BPJS")
        before = int(time.time() * 1000)
        db.update("reg_periksa", {"no_rawat": kb}, stts="Batal")
        await eventually(lambda: [n for n, _ in h.sim.tasks(kb)] == [3, 99], "task 99 at BPJS")
        after = int(time.time() * 1000)
        waktu = dict(h.sim.tasks(kb))[99]
        # when the poller saw it (the start of the poll that read it, at most one
        # poll interval before the change landed): nothing older made up
        assert before - 1000 <= waktu <= after

        # BPJS has it before the dispatcher has written its answer down
        def task_99_sent() -> dict | None:
            [visit] = store.find_visits(kb, "rs")
            entry = visit.task_progress.get("99", {})
            return entry if entry.get("status") == "sent" else None

        entry = await eventually(task_99_sent, "task 99 recorded sent")
        assert entry["waktu"] == waktu
        assert entry["source"]["time"] == "observed"
        shown = subprocess.run(
            [sys.executable, "-m", "daemon", "visit", kb, "-c", str(suite["config"])],
            capture_output=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
            text=True,
        )
        assert shown.returncode == 0, shown.stderr
        line = next(x for x in shown.stdout.splitlines() if x.lstrip().startswith("task 99"))
        assert "sent" in line and "time observed by the poller" in line
        assert "sent sent" not in shown.stdout
    except BaseException:
        print("--- poller ---\n" + suite["poller"].output())
        raise
    finally:
        await suite["poller"].stop()
        await suite["dispatcher"].stop()
