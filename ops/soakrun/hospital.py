"""The soak's hospital: a Khanza-like SQLite file (the demo simulator's schema and
master data, ``daemon.sim.khanza``) where a month of outpatient visits happens in the
time of the run.

The demo's hospital books at most one visit a tick and numbers its bookings by
counting the day's rows; here many visits are booked a second, numbered from a
counter of the run, and a simulated day lasts ``day_seconds``. The poller reads the
bookings of today's date (its window, in real time), so at the end of each simulated
day the day's bookings are moved to a past service date (``close_day``): they leave
the window, as a real day's bookings do at midnight, and each poll reads about one
day of visits, not the month. Visits not finished by then stay unfinished, as the
demo leaves an earlier day's.

Every visit walks the demo's steps (book, check in and register, folder sent and
received, examined, prescription written and dispensed, one in ten cancelled
somewhere), each written as Khanza writes it, at the wall-clock time of the tick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from daemon.sim import khanza
from daemon.sim.khanza import (
    ARRIVE,
    CANCELLED,
    CHECK_IN,
    CLINICS,
    DISPENSED,
    EXAMINED,
    FOLDER_RECEIVED,
    FOLDER_SENT,
    PATIENTS,
    PRESCRIBED,
    REGISTER,
    ZERO_DATE,
    ZERO_DATETIME,
    ZERO_TIME,
    transaction,
)

QUOTA = 9999  # per poli and day: a month of visits never runs out of it
PACE = 0.7  # the chance an open visit takes its next step in a tick
NEW_PATIENTS = 0.3
RETURNING = 5000  # patients seeded for returning visits
# The indexes a real Khanza has on what the poller reads by (the reference dump,
# tests/data/khanza_schema.sql); the demo's small file goes without them. A real
# Khanza has none on referensi_mobilejkn_bpjs.tanggalperiksa: a poll scans the table.
INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS soak_booking_rawat ON referensi_mobilejkn_bpjs (no_rawat)",
    "CREATE INDEX IF NOT EXISTS soak_booking_norm ON referensi_mobilejkn_bpjs (norm)",
    "CREATE INDEX IF NOT EXISTS soak_resep_rawat ON resep_obat (no_rawat)",
)


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Visit:
    seq: int
    nobooking: str
    no_rawat: str
    norm: str
    kd_poli: str
    kd_dokter: str
    steps: list[str]  # what is left, in order
    last_at: datetime  # local, naive


class Hospital:
    """``tick(now, bookings)`` books that many visits and moves the open ones along;
    ``close_day(now)`` ends the simulated day."""

    def __init__(self, path: Path, zone: tzinfo, seed: int = 7) -> None:
        self.conn = khanza.create(path)
        self.zone = zone
        self.dice = random.Random(seed)
        self.open: list[Visit] = []
        self.booked = 0
        self.steps = 0
        self.closed_days = 0
        self.patients = int(self.conn.execute("SELECT count(*) FROM pasien").fetchone()[0])
        with transaction(self.conn):
            for statement in INDEXES:
                self.conn.execute(statement)
            while self.patients < RETURNING:
                self.patients += 1
                khanza._add_patient(self.conn, f"{self.patients:06d}", self.dice.choice(PATIENTS))

    def local(self, now: datetime) -> datetime:
        return now.astimezone(self.zone).replace(tzinfo=None, microsecond=0)

    def tick(self, now: datetime, bookings: int) -> int:
        """One round; returns how many rows of Khanza it changed (steps and bookings)."""
        wall = self.local(now)
        done = 0
        with transaction(self.conn):
            still: list[Visit] = []
            for visit in self.open:
                if self.dice.random() < PACE:
                    self._step(visit, wall)
                    done += 1
                if visit.steps:
                    still.append(visit)
            self.open = still
            for _ in range(bookings):
                self.open.append(self._book(wall))
                done += 1
        self.steps += done
        return done

    def close_day(self, now: datetime) -> None:
        """The simulated day ends: today's bookings move to a past service date (out
        of the poller's window); the visits still open stay as they are."""
        today = self.local(now).date()
        self.closed_days += 1
        past = today - timedelta(days=400 + self.closed_days)
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE referensi_mobilejkn_bpjs SET tanggalperiksa = ? WHERE tanggalperiksa = ?",
                (past.isoformat(), today.isoformat()),
            )
        self.open = []

    def close(self) -> None:
        self.conn.close()

    # --- a visit's steps ---------------------------------------------------------------

    def _book(self, wall: datetime) -> Visit:
        self.booked += 1
        seq = self.booked
        day = wall.date()
        kd_poli, _, bpjs_poli, kd_dokter, _, bpjs_doctor = self.dice.choice(CLINICS)
        nobooking = f"{day:%Y%m%d}{seq:07d}"
        new_patient = self.dice.random() < NEW_PATIENTS
        if new_patient:
            self.patients += 1
            norm = f"{self.patients:06d}"
            khanza._add_patient(self.conn, norm, self.dice.choice(PATIENTS))
        else:
            norm = f"{self.dice.randint(1, RETURNING):06d}"
        steps = khanza.visit_steps(self.dice, new_patient)
        estimate = wall + timedelta(minutes=15)
        estimate_ms = int(estimate.replace(tzinfo=self.zone).timestamp() * 1000)
        kartu, nik, nohp = self.conn.execute(
            "SELECT no_peserta, no_ktp, no_tlp FROM pasien WHERE no_rkm_medis = ?", (norm,)
        ).fetchone()
        number = seq % 1000 + 1
        self.conn.execute(
            "INSERT INTO referensi_mobilejkn_bpjs VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?,"
            " '00:00-23:59', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Belum', ?, 'Belum')",
            (
                nobooking, kartu, nik, nohp, bpjs_poli, "1" if new_patient else "0", norm,
                day.isoformat(), bpjs_doctor,
                "1 (Rujukan FKTP)" if new_patient else "3 (Kontrol)",
                f"0301R001{day:%m%y}B{seq:07d}", f"{kd_poli[0]}-{number:03d}",
                str(number), str(estimate_ms), QUOTA - number, QUOTA, QUOTA - number,
                QUOTA, ZERO_DATETIME,
            ),
        )  # fmt: skip
        no_rawat = f"{day:%Y/%m/%d}/{seq:07d}"
        return Visit(seq, nobooking, no_rawat, norm, kd_poli, kd_dokter, steps, wall)

    def _step(self, visit: Visit, wall: datetime) -> None:
        step = visit.steps.pop(0)
        at = max(wall, visit.last_at + timedelta(seconds=1))
        visit.last_at = at
        if step in (CHECK_IN, ARRIVE):
            self._check_in(visit, at)
        if step in (REGISTER, ARRIVE):
            self._register(visit, at, new_patient=step == REGISTER)
        if step == FOLDER_SENT:
            self.conn.execute(
                "INSERT INTO mutasi_berkas VALUES (?, 'Sudah Dikirim', ?, ?, ?, ?, ?)",
                (visit.no_rawat, _text(at), ZERO_DATETIME, ZERO_DATETIME, ZERO_DATETIME,
                 ZERO_DATETIME),
            )  # fmt: skip
        elif step == FOLDER_RECEIVED:
            self.conn.execute(
                "UPDATE mutasi_berkas SET diterima = ?, status = 'Sudah Diterima'"
                " WHERE no_rawat = ?",
                (_text(at), visit.no_rawat),
            )
        elif step == EXAMINED:
            self.conn.execute(
                "INSERT INTO pemeriksaan_ralan (no_rawat, tgl_perawatan, jam_rawat, tensi,"
                " spo2, keluhan, nip) VALUES (?, ?, ?, '120/80', '98', 'kontrol', ?)",
                (visit.no_rawat, at.date().isoformat(), at.strftime("%H:%M:%S"), visit.kd_dokter),
            )
        elif step == PRESCRIBED:
            self.conn.execute(
                "INSERT INTO resep_obat VALUES (?, ?, ?, ?, ?, ?, ?, 'ralan', ?, ?)",
                (
                    f"R{visit.seq:09d}", ZERO_DATE, ZERO_TIME, visit.no_rawat, visit.kd_dokter,
                    at.date().isoformat(), at.strftime("%H:%M:%S"), ZERO_DATE, ZERO_TIME,
                ),
            )  # fmt: skip
        elif step == DISPENSED:
            self.conn.execute(
                "UPDATE resep_obat SET tgl_perawatan = ?, jam = ? WHERE no_rawat = ?",
                (at.date().isoformat(), at.strftime("%H:%M:%S"), visit.no_rawat),
            )
        elif step == CANCELLED:
            self.conn.execute(
                "INSERT INTO referensi_mobilejkn_bpjs_batal SELECT norm, no_rawat,"
                " nomorreferensi, ?, 'pasien batal berobat', 'Belum', nobooking"
                " FROM referensi_mobilejkn_bpjs WHERE nobooking = ?",
                (_text(at), visit.nobooking),
            )
            self.conn.execute(
                "UPDATE referensi_mobilejkn_bpjs SET status = 'Batal' WHERE nobooking = ?",
                (visit.nobooking,),
            )

    def _check_in(self, visit: Visit, at: datetime) -> None:
        self.conn.execute(
            "UPDATE referensi_mobilejkn_bpjs SET validasi = ?, status = 'Checkin'"
            " WHERE nobooking = ?",
            (_text(at), visit.nobooking),
        )

    def _register(self, visit: Visit, at: datetime, new_patient: bool) -> None:
        day: date = at.date()
        kind = "Baru" if new_patient else "Lama"
        self.conn.execute(
            "INSERT INTO reg_periksa VALUES (?, ?, ?, ?, ?, ?, ?, '-', '-', '-', 0, 'Belum', ?,"
            " 'Ralan', 'BPJ', 40, 'Th', 'Belum Bayar', ?)",
            (
                f"{visit.seq % 1000 + 1:03d}", visit.no_rawat, day.isoformat(),
                at.strftime("%H:%M:%S"), visit.kd_dokter, visit.norm, visit.kd_poli, kind, kind,
            ),
        )  # fmt: skip
        self.conn.execute(
            "UPDATE referensi_mobilejkn_bpjs SET no_rawat = ? WHERE nobooking = ?",
            (visit.no_rawat, visit.nobooking),
        )
