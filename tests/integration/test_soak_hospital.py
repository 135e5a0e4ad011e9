"""The soak's hospital (``ops/soakrun/hospital.py``): many visits a tick, numbered
for the whole run, read back by the Khanza source with their task times in order;
closing a simulated day takes its bookings out of the poller's window."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.bpjs.plan import NEW_PATIENT_TASKS, RETURNING_PATIENT_TASKS
from daemon.sources.khanza.reader import KhanzaSource
from daemon.sources.khanza.settings import KhanzaSettings

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
JAKARTA = ZoneInfo("Asia/Jakarta")
MORNING = datetime(2026, 11, 23, 7, 30, tzinfo=JAKARTA)
OVERRIDES = {
    "1": "SELECT validasi FROM referensi_mobilejkn_bpjs WHERE nobooking = %(kodebooking)s",
    "2": "SELECT tgl_registrasi, jam_reg FROM reg_periksa WHERE no_rawat = %(no_rawat)s",
}


@pytest.fixture
def hospital_class(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "ops"))
    return importlib.import_module("soakrun.hospital").Hospital


def reader(path: Path) -> KhanzaSource:
    settings = KhanzaSettings.model_validate(
        {"kind": "khanza", "dsn": f"sqlite:///{path}", "channel": "bpjs", "queries": OVERRIDES}
    )
    return KhanzaSource("hospital", settings, JAKARTA)


def test_visits_are_read_back_in_order_and_leave_the_window_when_the_day_closes(
    tmp_path, hospital_class
):
    path = tmp_path / "khanza.db"
    hospital = hospital_class(path, JAKARTA, seed=3)
    try:
        hospital.tick(MORNING, 40)
        for n in range(1, 30):  # every visit has time to finish
            hospital.tick(MORNING + timedelta(seconds=n), 0)
        today = MORNING.date()
        bookings = reader(path).read(today, today)
        assert len(bookings) == 40
        assert len({b.kodebooking for b in bookings}) == 40
        for booking in bookings:
            order = NEW_PATIENT_TASKS if booking.new_patient else RETURNING_PATIENT_TASKS
            times = [booking.times[t] for t in order if booking.times.get(t) is not None]
            assert times == sorted(times), booking.kodebooking
            assert len(set(times)) == len(times)  # a second apart at least
        assert not hospital.open  # every visit walked to its end

        hospital.close_day(MORNING)
        assert reader(path).read(today, today) == []
        # the next day's numbers go on from the run's counter: no booking is reused
        hospital.tick(MORNING + timedelta(minutes=5), 5)
        later = reader(path).read(today, today)
        assert len(later) == 5
        assert not {b.kodebooking for b in later} & {b.kodebooking for b in bookings}
    finally:
        hospital.close()
