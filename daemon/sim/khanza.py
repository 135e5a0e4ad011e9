"""A hospital on SIMRS Khanza for the demo: a Khanza-like SQLite database, seeded
with polis, doctors, schedules and patients, where a day of outpatient visits
happens live, written the way Khanza writes them.

Each tick (``--every``, 2 s by default) a patient may book through Mobile JKN, and
each visit under way may take its next step, each step written with the current
local time of ``--timezone`` (DATETIMEs without a zone, as Khanza keeps them):

======================  ================================================  =====
step                    what Khanza writes                                task
======================  ================================================  =====
book                    ``referensi_mobilejkn_bpjs`` (status 'Belum')     add
check in                ``validasi``, status 'Checkin'                    1 *
register                ``reg_periksa`` (tgl_registrasi, jam_reg)         2 *
folder sent             ``mutasi_berkas.dikirim`` (diterima a zero date)  3
folder received         ``mutasi_berkas.diterima``                        4
examined                ``pemeriksaan_ralan``                             5
prescription written    ``resep_obat`` tgl/jam_peresepan                  6
medicine ready          ``resep_obat`` tgl_perawatan/jam                  7
cancelled               ``referensi_mobilejkn_bpjs_batal``, 'Batal'       99
======================  ================================================  =====

(* the demo config reads tasks 1 and 2 with override queries, as a hospital
would; new patients only.) Returning patients check in and register in one step;
a quarter of the visits end without a prescription; one in ten is cancelled
somewhere along the way. A visit's times always increase, by a second at least.
Unfinished visits of an earlier day are left as they are.

Run it as the demo does (``python -m daemon.sim.run khanza -c FILE --source
NAME`` takes the file and the zone from the source's settings) or directly::

    python -m daemon.sim.khanza --db var/khanza-demo.db --timezone Asia/Jakarta

It creates the file (WAL mode) on the first start and carries on where it left
off after a restart: each visit's place is kept in its own table
(``outboxd_sim_visit``). Exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.domain.logs import setup_logging
from daemon.domain.units import parse_duration

log = logging.getLogger("outboxd.sim.khanza")

ZERO_DATETIME = "0000-00-00 00:00:00"
ZERO_DATE = "0000-00-00"
ZERO_TIME = "00:00:00"
HARI = ("SENIN", "SELASA", "RABU", "KAMIS", "JUMAT", "SABTU", "AKHAD")

# The tables the Khanza source reads, with Khanza's column names (types as SQLite
# keeps them; the reference dump has the MariaDB originals), and the simulator's own.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS poliklinik (
        kd_poli TEXT PRIMARY KEY, nm_poli TEXT, registrasi REAL NOT NULL DEFAULT 0,
        registrasilama REAL NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT '1')""",
    """CREATE TABLE IF NOT EXISTS dokter (kd_dokter TEXT PRIMARY KEY, nm_dokter TEXT)""",
    """CREATE TABLE IF NOT EXISTS jadwal (
        kd_dokter TEXT NOT NULL, hari_kerja TEXT NOT NULL, jam_mulai TEXT NOT NULL,
        jam_selesai TEXT, kd_poli TEXT, kuota INTEGER)""",
    """CREATE TABLE IF NOT EXISTS maping_poli_bpjs (
        kd_poli_rs TEXT PRIMARY KEY, kd_poli_bpjs TEXT NOT NULL, nm_poli_bpjs TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS maping_dokter_dpjpvclaim (
        kd_dokter TEXT PRIMARY KEY, kd_dokter_bpjs TEXT, nm_dokter_bpjs TEXT)""",
    """CREATE TABLE IF NOT EXISTS pasien (
        no_rkm_medis TEXT PRIMARY KEY, nm_pasien TEXT, no_ktp TEXT, jk TEXT, tgl_lahir TEXT,
        no_tlp TEXT, kd_pj TEXT NOT NULL DEFAULT 'BPJ', no_peserta TEXT)""",
    """CREATE TABLE IF NOT EXISTS reg_periksa (
        no_reg TEXT, no_rawat TEXT PRIMARY KEY, tgl_registrasi TEXT, jam_reg TEXT,
        kd_dokter TEXT, no_rkm_medis TEXT, kd_poli TEXT, p_jawab TEXT, almt_pj TEXT,
        hubunganpj TEXT, biaya_reg REAL, stts TEXT, stts_daftar TEXT NOT NULL,
        status_lanjut TEXT NOT NULL, kd_pj TEXT NOT NULL, umurdaftar INTEGER, sttsumur TEXT,
        status_bayar TEXT NOT NULL DEFAULT 'Belum Bayar', status_poli TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS referensi_mobilejkn_bpjs (
        nobooking TEXT PRIMARY KEY, no_rawat TEXT, nomorkartu TEXT, nik TEXT, nohp TEXT,
        kodepoli TEXT, pasienbaru TEXT NOT NULL, norm TEXT, tanggalperiksa TEXT,
        kodedokter TEXT, jampraktek TEXT, jeniskunjungan TEXT, nomorreferensi TEXT NOT NULL,
        nomorantrean TEXT NOT NULL, angkaantrean TEXT NOT NULL, estimasidilayani TEXT NOT NULL,
        sisakuotajkn INTEGER NOT NULL, kuotajkn INTEGER NOT NULL,
        sisakuotanonjkn INTEGER NOT NULL, kuotanonjkn INTEGER NOT NULL,
        status TEXT NOT NULL, validasi TEXT NOT NULL, statuskirim TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS referensi_mobilejkn_bpjs_batal (
        no_rkm_medis TEXT NOT NULL, no_rawat_batal TEXT, nomorreferensi TEXT NOT NULL,
        tanggalbatal TEXT NOT NULL, keterangan TEXT, statuskirim TEXT NOT NULL,
        nobooking TEXT PRIMARY KEY)""",
    """CREATE TABLE IF NOT EXISTS mutasi_berkas (
        no_rawat TEXT PRIMARY KEY, status TEXT, dikirim TEXT, diterima TEXT, kembali TEXT,
        tidakada TEXT, ranap TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pemeriksaan_ralan (
        no_rawat TEXT NOT NULL, tgl_perawatan TEXT NOT NULL, jam_rawat TEXT NOT NULL,
        tensi TEXT NOT NULL DEFAULT '', spo2 TEXT NOT NULL DEFAULT '',
        kesadaran TEXT NOT NULL DEFAULT 'Compos Mentis', keluhan TEXT,
        rtl TEXT NOT NULL DEFAULT '-', penilaian TEXT NOT NULL DEFAULT '-',
        instruksi TEXT NOT NULL DEFAULT '-', evaluasi TEXT NOT NULL DEFAULT '-',
        nip TEXT NOT NULL DEFAULT '', PRIMARY KEY (no_rawat, tgl_perawatan, jam_rawat))""",
    """CREATE TABLE IF NOT EXISTS resep_obat (
        no_resep TEXT PRIMARY KEY, tgl_perawatan TEXT, jam TEXT NOT NULL, no_rawat TEXT NOT NULL,
        kd_dokter TEXT NOT NULL, tgl_peresepan TEXT, jam_peresepan TEXT, status TEXT,
        tgl_penyerahan TEXT NOT NULL, jam_penyerahan TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outboxd_sim_visit (
        nobooking TEXT PRIMARY KEY, day TEXT NOT NULL, no_rawat TEXT, norm TEXT NOT NULL,
        kd_poli TEXT NOT NULL, kd_dokter TEXT NOT NULL, steps TEXT NOT NULL,
        done INTEGER NOT NULL DEFAULT 0, last_at TEXT NOT NULL)""",
)

# (kd_poli, name, BPJS code, kd_dokter, doctor, BPJS doctor code)
CLINICS = (
    ("INT", "Poli Penyakit Dalam", "INT", "D0001", "dr. Andi Wijaya, Sp.PD", "31001"),
    ("ANA", "Poli Anak", "ANA", "D0002", "dr. Sari Lestari, Sp.A", "31002"),
    ("MAT", "Poli Mata", "MAT", "D0003", "dr. Bima Putra, Sp.M", "31003"),
)
QUOTA = 200
PATIENTS = (
    "Budi Santoso", "Siti Rahayu", "Agus Hidayat", "Dewi Lestari", "Rizky Pratama",
    "Nur Aini", "Hendra Gunawan", "Putri Maharani", "Joko Susilo", "Wulan Sari",
)  # fmt: skip

BOOK, CHECK_IN, REGISTER, ARRIVE = "book", "check_in", "register", "arrive"
FOLDER_SENT, FOLDER_RECEIVED, EXAMINED = "folder_sent", "folder_received", "examined"
PRESCRIBED, DISPENSED, CANCELLED = "prescribed", "dispensed", "cancelled"


def create(path: Path) -> sqlite3.Connection:
    """Open (making it if need be) the database, its tables and master data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in SCHEMA:
        conn.execute(statement)
    if conn.execute("SELECT count(*) FROM poliklinik").fetchone()[0] == 0:
        _seed(conn)
    return conn


def _seed(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        for kd_poli, poli, bpjs_poli, kd_dokter, doctor, bpjs_doctor in CLINICS:
            conn.execute("INSERT INTO poliklinik (kd_poli, nm_poli) VALUES (?, ?)", (kd_poli, poli))
            conn.execute(
                "INSERT INTO maping_poli_bpjs VALUES (?, ?, ?)", (kd_poli, bpjs_poli, poli.upper())
            )
            conn.execute("INSERT INTO dokter VALUES (?, ?)", (kd_dokter, doctor))
            conn.execute(
                "INSERT INTO maping_dokter_dpjpvclaim VALUES (?, ?, ?)",
                (kd_dokter, bpjs_doctor, doctor),
            )
            for hari in HARI:  # open all day, every day: the demo runs at any hour
                conn.execute(
                    "INSERT INTO jadwal VALUES (?, ?, '00:00:00', '23:59:59', ?, ?)",
                    (kd_dokter, hari, kd_poli, QUOTA),
                )
        for number, name in enumerate(PATIENTS, 1):
            _add_patient(conn, f"{number:06d}", name)


def visit_steps(dice: random.Random, new_patient: bool) -> list[str]:
    """The steps one visit goes through after its booking: a new patient checks in
    and is registered, a known one arrives; the folder, the examination, three in
    four a prescription written and dispensed; one in ten cancelled on the way."""
    steps = [CHECK_IN, REGISTER] if new_patient else [ARRIVE]
    steps += [FOLDER_SENT, FOLDER_RECEIVED, EXAMINED]
    if dice.random() < 0.75:
        steps += [PRESCRIBED, DISPENSED]
    if dice.random() < 0.1:
        steps.insert(dice.randint(0, len(steps) - 1), CANCELLED)
        steps = steps[: steps.index(CANCELLED) + 1]
    return steps


def _add_patient(conn: sqlite3.Connection, norm: str, name: str) -> None:
    conn.execute(
        "INSERT INTO pasien (no_rkm_medis, nm_pasien, no_ktp, jk, tgl_lahir, no_tlp, kd_pj,"
        " no_peserta) VALUES (?, ?, ?, ?, '1980-01-01', ?, 'BPJ', ?)",
        (norm, name, f"3171{norm:0>12}", "L", f"0812{norm:0>8}", f"000{norm:0>10}"),
    )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on an error) on an autocommit connection."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass
class Visit:
    nobooking: str
    no_rawat: str | None
    norm: str
    kd_poli: str
    kd_dokter: str
    steps: list[str]  # what is left, in order
    last_at: datetime  # local, naive


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class Hospital:
    """The simulated hospital: ``tick(now)`` moves its day along to ``now``."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        zone: tzinfo,
        arrivals: float = 0.5,
        pace: float = 0.6,
        seed: int | None = None,
    ) -> None:
        self.conn = conn
        self.zone = zone
        self.arrivals = arrivals
        self.pace = pace
        self.dice = random.Random(seed)

    def local(self, now: datetime) -> datetime:
        """``now`` (aware) as the hospital's wall clock, to the second, no zone."""
        return now.astimezone(self.zone).replace(tzinfo=None, microsecond=0)

    def tick(self, now: datetime) -> list[str]:
        """One round: maybe a new booking, maybe a step for each visit under way.
        Returns what happened, a line each."""
        wall = self.local(now)
        happened: list[str] = []
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE outboxd_sim_visit SET done = 1 WHERE done = 0 AND day < ?",
                (wall.date().isoformat(),),
            )
            for visit in self._open(wall.date()):
                if self.dice.random() < self.pace:
                    happened.append(self._step(visit, wall))
            if self.dice.random() < self.arrivals:
                happened.append(self.book(wall))
        return happened

    # --- visits ------------------------------------------------------------------------

    def _open(self, day: date) -> list[Visit]:
        rows = self.conn.execute(
            "SELECT nobooking, no_rawat, norm, kd_poli, kd_dokter, steps, last_at"
            " FROM outboxd_sim_visit WHERE done = 0 AND day = ? ORDER BY nobooking",
            (day.isoformat(),),
        ).fetchall()
        return [
            Visit(r[0], r[1], r[2], r[3], r[4], r[5].split(","), datetime.fromisoformat(r[6]))
            for r in rows
        ]  # fmt: skip

    def _save(self, visit: Visit) -> None:
        self.conn.execute(
            "UPDATE outboxd_sim_visit SET no_rawat = ?, steps = ?, done = ?, last_at = ?"
            " WHERE nobooking = ?",
            (visit.no_rawat, ",".join(visit.steps), int(not visit.steps),
             _text(visit.last_at), visit.nobooking),
        )  # fmt: skip

    def book(self, wall: datetime) -> str:
        """A Mobile JKN booking for today, by a new or a returning patient."""
        day = wall.date()
        kd_poli, _, bpjs_poli, kd_dokter, _, bpjs_doctor = self.dice.choice(CLINICS)
        count = self.conn.execute(
            "SELECT count(*) FROM referensi_mobilejkn_bpjs WHERE tanggalperiksa = ?",
            (day.isoformat(),),
        ).fetchone()[0]
        taken = self.conn.execute(
            "SELECT count(*) FROM referensi_mobilejkn_bpjs WHERE tanggalperiksa = ?"
            " AND kodepoli = ?",
            (day.isoformat(), bpjs_poli),
        ).fetchone()[0]
        nobooking = f"{day:%Y%m%d}{count + 1:05d}"
        new_patient = self.dice.random() < 0.3
        if new_patient:
            norm = f"{self._patients() + 1:06d}"
            _add_patient(self.conn, norm, self.dice.choice(PATIENTS))
        else:
            norm = f"{self.dice.randint(1, len(PATIENTS)):06d}"
        steps = visit_steps(self.dice, new_patient)
        estimate = wall + timedelta(minutes=15 + 5 * taken)
        estimate_ms = int(estimate.replace(tzinfo=self.zone).timestamp() * 1000)
        kartu, nik, nohp = self.conn.execute(
            "SELECT no_peserta, no_ktp, no_tlp FROM pasien WHERE no_rkm_medis = ?", (norm,)
        ).fetchone()
        self.conn.execute(
            "INSERT INTO referensi_mobilejkn_bpjs VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?,"
            " '00:00-23:59', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Belum', ?, 'Belum')",
            (
                nobooking, kartu, nik, nohp, bpjs_poli, "1" if new_patient else "0", norm,
                day.isoformat(), bpjs_doctor,
                "1 (Rujukan FKTP)" if new_patient else "3 (Kontrol)",
                f"0301R001{day:%m%y}B{count + 1:06d}", f"{kd_poli[0]}-{taken + 1:03d}",
                str(taken + 1), str(estimate_ms), QUOTA - taken - 1, QUOTA, QUOTA - taken - 1,
                QUOTA, ZERO_DATETIME,
            ),
        )  # fmt: skip
        self.conn.execute(
            "INSERT INTO outboxd_sim_visit VALUES (?, ?, NULL, ?, ?, ?, ?, 0, ?)",
            (nobooking, day.isoformat(), norm, kd_poli, kd_dokter, ",".join(steps), _text(wall)),
        )
        kind = "new" if new_patient else "returning"
        return f"booking {nobooking}: {kind} patient {norm} at {kd_poli} (add)"

    def _patients(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM pasien").fetchone()[0])

    def _step(self, visit: Visit, wall: datetime) -> str:
        step = visit.steps.pop(0)
        at = max(wall, visit.last_at + timedelta(seconds=1))
        visit.last_at = at
        task = getattr(self, f"_{step}")(visit, at)
        self._save(visit)
        return f"booking {visit.nobooking}: {step.replace('_', ' ')} at {at:%H:%M:%S} ({task})"

    def _check_in(self, visit: Visit, at: datetime) -> str:
        self.conn.execute(
            "UPDATE referensi_mobilejkn_bpjs SET validasi = ?, status = 'Checkin'"
            " WHERE nobooking = ?",
            (_text(at), visit.nobooking),
        )
        return "task 1"

    def _register(self, visit: Visit, at: datetime, new_patient: bool = True) -> str:
        day = at.date()
        count = self.conn.execute(
            "SELECT count(*) FROM reg_periksa WHERE tgl_registrasi = ?", (day.isoformat(),)
        ).fetchone()[0]
        per_poli = self.conn.execute(
            "SELECT count(*) FROM reg_periksa WHERE tgl_registrasi = ? AND kd_poli = ?",
            (day.isoformat(), visit.kd_poli),
        ).fetchone()[0]
        visit.no_rawat = f"{day:%Y/%m/%d}/{count + 1:06d}"
        self.conn.execute(
            "INSERT INTO reg_periksa VALUES (?, ?, ?, ?, ?, ?, ?, '-', '-', '-', 0, 'Belum', ?,"
            " 'Ralan', 'BPJ', 40, 'Th', 'Belum Bayar', ?)",
            (
                f"{per_poli + 1:03d}", visit.no_rawat, day.isoformat(), at.strftime("%H:%M:%S"),
                visit.kd_dokter, visit.norm, visit.kd_poli, "Baru" if new_patient else "Lama",
                "Baru" if new_patient else "Lama",
            ),
        )  # fmt: skip
        self.conn.execute(
            "UPDATE referensi_mobilejkn_bpjs SET no_rawat = ? WHERE nobooking = ?",
            (visit.no_rawat, visit.nobooking),
        )
        return "task 2"

    def _arrive(self, visit: Visit, at: datetime) -> str:
        """A returning patient checks in and is registered at once (no tasks 1-2)."""
        self._check_in(visit, at)
        self._register(visit, at, new_patient=False)
        return "checked in and registered"

    def _folder_sent(self, visit: Visit, at: datetime) -> str:
        self.conn.execute(
            "INSERT INTO mutasi_berkas VALUES (?, 'Sudah Dikirim', ?, ?, ?, ?, ?)",
            (visit.no_rawat, _text(at), ZERO_DATETIME, ZERO_DATETIME, ZERO_DATETIME,
             ZERO_DATETIME),
        )  # fmt: skip
        return "task 3"

    def _folder_received(self, visit: Visit, at: datetime) -> str:
        self.conn.execute(
            "UPDATE mutasi_berkas SET diterima = ?, status = 'Sudah Diterima' WHERE no_rawat = ?",
            (_text(at), visit.no_rawat),
        )
        return "task 4"

    def _examined(self, visit: Visit, at: datetime) -> str:
        self.conn.execute(
            "INSERT INTO pemeriksaan_ralan (no_rawat, tgl_perawatan, jam_rawat, tensi, spo2,"
            " keluhan, nip) VALUES (?, ?, ?, '120/80', '98', 'kontrol', ?)",
            (visit.no_rawat, at.date().isoformat(), at.strftime("%H:%M:%S"), visit.kd_dokter),
        )
        self.conn.execute(
            "UPDATE reg_periksa SET stts = 'Sudah' WHERE no_rawat = ?", (visit.no_rawat,)
        )
        return "task 5"

    def _prescribed(self, visit: Visit, at: datetime) -> str:
        self.conn.execute(
            "INSERT INTO resep_obat VALUES (?, ?, ?, ?, ?, ?, ?, 'ralan', ?, ?)",
            (
                f"{at:%Y%m%d}{visit.nobooking[-5:]}", ZERO_DATE, ZERO_TIME, visit.no_rawat,
                visit.kd_dokter, at.date().isoformat(), at.strftime("%H:%M:%S"), ZERO_DATE,
                ZERO_TIME,
            ),
        )  # fmt: skip
        return "task 6"

    def _dispensed(self, visit: Visit, at: datetime) -> str:
        self.conn.execute(
            "UPDATE resep_obat SET tgl_perawatan = ?, jam = ? WHERE no_rawat = ?",
            (at.date().isoformat(), at.strftime("%H:%M:%S"), visit.no_rawat),
        )
        return "task 7"

    def _cancelled(self, visit: Visit, at: datetime) -> str:
        self.conn.execute(
            "INSERT INTO referensi_mobilejkn_bpjs_batal SELECT norm, no_rawat, nomorreferensi,"
            " ?, 'pasien batal berobat', 'Belum', nobooking FROM referensi_mobilejkn_bpjs"
            " WHERE nobooking = ?",
            (_text(at), visit.nobooking),
        )
        self.conn.execute(
            "UPDATE referensi_mobilejkn_bpjs SET status = 'Batal' WHERE nobooking = ?",
            (visit.nobooking,),
        )
        if visit.no_rawat:
            self.conn.execute(
                "UPDATE reg_periksa SET stts = 'Batal' WHERE no_rawat = ?", (visit.no_rawat,)
            )
        return "task 99"


# --- as a process ---------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim.khanza", description="a SIMRS Khanza hospital for the demo"
    )
    parser.add_argument("--db", required=True, help="the SQLite file (made if missing)")
    parser.add_argument("--timezone", default="Asia/Jakarta", help="the hospital's IANA zone")
    parser.add_argument("--every", default="2s", help="time between ticks (at least 1s)")
    parser.add_argument("--arrivals", type=float, default=0.5, help="chance of a booking a tick")
    parser.add_argument("--pace", type=float, default=0.6, help="chance a visit moves a tick")
    parser.add_argument("--seed", type=int, help="for the dice")
    parser.add_argument("--count", type=int, default=0, help="stop after this many ticks")
    args = parser.parse_args(argv)
    try:
        args.every = parse_duration(args.every)
        args.zone = ZoneInfo(args.timezone)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        parser.error(str(exc))
    if args.every < 1:
        parser.error("--every: at least 1s (Khanza keeps times to the second)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    setup_logging("INFO", "text", "sim-khanza")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    conn = create(Path(args.db))
    hospital = Hospital(conn, args.zone, args.arrivals, args.pace, args.seed)
    log.info("hospital open", extra={"db": args.db, "timezone": args.timezone})
    ticks = 0
    while not stop.is_set():
        try:
            for line in hospital.tick(datetime.now(args.zone)):
                log.info(line)
        except sqlite3.Error as exc:
            log.warning("tick failed, trying again: %s", exc)
        ticks += 1
        if args.count and ticks >= args.count:
            break
        stop.wait(args.every)
    conn.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
