"""The demo's hospital (``daemon.sim.khanza``): what it writes is what Khanza
would, the Khanza source reads it back as it was written, a visit's times only
increase, and a restart or a new day carries on where it left off."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.bpjs.plan import plan_visit
from daemon.sim import khanza as sim
from daemon.sim.run import main as run_main
from daemon.sources.khanza.reader import KhanzaSource
from daemon.sources.khanza.settings import KhanzaSettings

pytestmark = pytest.mark.timeout(60)

JAKARTA = ZoneInfo("Asia/Jakarta")
MAKASSAR = ZoneInfo("Asia/Makassar")
MORNING = datetime(2026, 11, 23, 7, 30, tzinfo=JAKARTA)
OVERRIDES = {
    "1": "SELECT validasi FROM referensi_mobilejkn_bpjs WHERE nobooking = %(kodebooking)s",
    "2": "SELECT tgl_registrasi, jam_reg FROM reg_periksa WHERE no_rawat = %(no_rawat)s",
}
TASKS = {
    sim.CHECK_IN: 1,
    sim.REGISTER: 2,
    sim.FOLDER_SENT: 3,
    sim.FOLDER_RECEIVED: 4,
    sim.EXAMINED: 5,
    sim.PRESCRIBED: 6,
    sim.DISPENSED: 7,
    sim.CANCELLED: 99,
}


def source(path: Path, zone: ZoneInfo = JAKARTA) -> KhanzaSource:
    settings = KhanzaSettings.model_validate(
        {"kind": "khanza", "dsn": f"sqlite:///{path}", "channel": "bpjs", "queries": OVERRIDES}
    )
    return KhanzaSource("rs_demo", settings, zone)


def run_day(path: Path, ticks: int, start: datetime = MORNING, seed: int = 7) -> list[str]:
    conn = sim.create(path)
    hospital = sim.Hospital(conn, start.tzinfo, arrivals=0.7, pace=0.6, seed=seed)  # type: ignore[arg-type]
    lines: list[str] = []
    try:
        for n in range(ticks):
            lines += hospital.tick(start + timedelta(seconds=2 * n))
    finally:
        conn.close()
    return lines


def written(lines: list[str]) -> dict[str, dict[int, str]]:
    """{booking: {task: HH:MM:SS}} from the hospital's own log lines."""
    found: dict[str, dict[int, str]] = {}
    for line in lines:
        booking, what = line.removeprefix("booking ").split(": ", 1)
        found.setdefault(booking, {})
        step, _, rest = what.partition(" at ")
        task = TASKS.get(step.replace(" ", "_"))
        if task is not None:
            found[booking][task] = rest.split(" ", 1)[0]
        elif step == "arrive":
            found[booking][0] = rest.split(" ", 1)[0]  # no task: check-in and registration
    return found


def test_a_morning_is_read_back_as_it_was_written(tmp_path):
    path = tmp_path / "khanza.db"
    lines = run_day(path, 60)
    bookings = {b.kodebooking: b for b in source(path).read(MORNING.date(), MORNING.date())}
    expected = written(lines)
    assert set(bookings) == set(expected) and len(bookings) >= 20
    kinds = {"new": 0, "returning": 0, "cancelled": 0}
    for kb, booking in bookings.items():
        times = {n: t for n, t in booking.times.items() if t is not None}
        wanted = {n: t for n, t in expected[kb].items() if n}
        if not booking.new_patient:  # returning: 1 and 2 exist in Khanza, are not BPJS's
            times.pop(1, None), times.pop(2, None)
        assert {n: t.strftime("%H:%M:%S") for n, t in times.items()} == wanted, kb
        assert all(t.tzinfo is JAKARTA for t in times.values())
        ordered = [times[n] for n in sorted(times) if n != 99]
        assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered), kb
        assert booking.cancelled == (99 in times)
        kinds["new" if booking.new_patient else "returning"] += 1
        kinds["cancelled"] += booking.cancelled
        # every step planned goes: nothing held, nothing refused by the payload checks
        messages, entries = plan_visit(booking, {}, JAKARTA, "bpjs")
        assert booking.add_problem is None
        assert all(e["status"] == "queued" for e in entries.values()), (kb, entries)
        assert [m.key for m in messages] == [
            f"{kb}:add",
            *(f"{kb}:task:{n}" for n in sorted(times)),
        ]
    assert kinds["new"] and kinds["returning"], kinds


def test_the_zone_is_the_hospital_s(tmp_path):
    path = tmp_path / "khanza.db"
    start = MORNING.replace(tzinfo=MAKASSAR)
    lines = run_day(path, 10, start=start)
    first = written(lines)
    kb = next(k for k, tasks in first.items() if any(n > 2 for n in tasks))
    task = next(n for n in first[kb] if n > 2)
    booking = next(b for b in source(path, MAKASSAR).read(start.date(), start.date())
                   if b.kodebooking == kb)  # fmt: skip
    moment = booking.times[task]
    assert moment is not None and moment.utcoffset() == timedelta(hours=8)
    assert moment.strftime("%H:%M:%S") == first[kb][task]


def test_a_restart_carries_on_and_a_new_day_starts_afresh(tmp_path):
    path = tmp_path / "khanza.db"
    before = written(run_day(path, 10))
    after = written(run_day(path, 20, start=MORNING + timedelta(seconds=20), seed=8))
    carried = set(before) & set(after)
    assert carried, "no visit under way went on after the restart"
    for kb in carried:  # later steps, never one done twice
        assert not set(before[kb]) & set(after[kb]), kb
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM poliklinik").fetchone()[0] == len(sim.CLINICS)
        open_before = conn.execute("SELECT count(*) FROM outboxd_sim_visit WHERE done = 0")
        assert open_before.fetchone()[0] > 0
    tomorrow = MORNING + timedelta(days=1)
    lines = run_day(path, 1, start=tomorrow, seed=1)
    assert all(tomorrow.strftime("%Y%m%d") in line for line in lines)
    with sqlite3.connect(path) as conn:
        stale = conn.execute(
            "SELECT count(*) FROM outboxd_sim_visit WHERE done = 0 AND day < ?",
            (tomorrow.date().isoformat(),),
        )
        assert stale.fetchone()[0] == 0


def test_as_a_process_it_exits_zero_after_its_ticks(tmp_path):
    path = tmp_path / "var" / "khanza.db"
    done = subprocess.run(
        [sys.executable, "-m", "daemon.sim.khanza", "--db", str(path), "--every", "1s",
         "--arrivals", "1", "--count", "2"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("(add)") == 2 and "stopped" in done.stderr
    today = datetime.now(JAKARTA).date()
    found = source(path).read(today - timedelta(days=1), today + timedelta(days=1))
    assert len(found) == 2


CONFIG = """
database: sqlite:///{store}
timezone: Asia/Makassar
channels:
  bpjs: {{kind: bpjs_antrean, base_url: "http://127.0.0.1:1/", cons_id: "1", secret: s,
          user_key: k}}
sources:
  real: {{kind: khanza, dsn: "mysql://u:p@10.0.0.5/sik", channel: bpjs}}
  demo: {{kind: khanza, dsn: "sqlite:///{demo}", channel: bpjs}}
"""


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--source", "real"], "sources.real.dsn: the hospital simulator writes a SQLite file"),
        (["--source", "nope"], "no khanza source named 'nope'"),
        (["--channel", "bpjs"], "khanza needs --source NAME"),
    ],
)
def test_the_runner_refuses_what_is_not_a_demo_hospital(tmp_path, capsys, argv, problem):
    config = tmp_path / "outboxd.yaml"
    config.write_text(CONFIG.format(store=tmp_path / "o.db", demo=tmp_path / "k.db"))
    try:
        code = run_main(["khanza", "-c", str(config), *argv])
    except SystemExit as exc:  # argparse's usage error
        code = exc.code
    assert code in (2, 78)
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "k.db").exists()


def test_the_runner_takes_the_file_and_zone_from_the_source(tmp_path):
    config = tmp_path / "outboxd.yaml"
    config.write_text(CONFIG.format(store=tmp_path / "o.db", demo=tmp_path / "k.db"))
    done = subprocess.run(
        [sys.executable, "-m", "daemon.sim.run", "khanza", "-c", str(config), "--source", "demo",
         "--count", "1", "--arrivals", "1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    today = datetime.now(MAKASSAR).date()
    (booking,) = source(tmp_path / "k.db", MAKASSAR).read(today, today)
    assert (
        booking.service_date
        == today
        == date.fromisoformat(
            f"{booking.kodebooking[:4]}-{booking.kodebooking[4:6]}-{booking.kodebooking[6:8]}"
        )
    )
