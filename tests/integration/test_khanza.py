"""The Khanza source against a real MariaDB (a database of its own with the
reference schema) and against a Khanza-like SQLite file (the demo's), each with
the same day of visits (new and returning patients, prescriptions,
cancellations, zero dates); overrides; a server down, refusing or slow; a file
missing or a query too slow."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.bpjs.plan import Booking, epoch_ms, plan_visit
from daemon.sources.base import SourceError
from daemon.sources.khanza.reader import KhanzaSource
from daemon.sources.khanza.settings import KhanzaSettings
from tests.integration.khanza_db import (
    ZERO_DATE,
    ZERO_DATETIME,
    ZERO_TIME,
    KhanzaDb,
    SqliteKhanzaDb,
    at,
)
from tests.integration.khanza_db import no_rawat as rawat

pytestmark = pytest.mark.timeout(60)

DAY = date(2026, 11, 23)  # a Monday: SENIN in jadwal
JAKARTA = ZoneInfo("Asia/Jakarta")
MAKASSAR = ZoneInfo("Asia/Makassar")
R1, R2, R3, R5, R7, R8, R9, R10 = (rawat(DAY, n) for n in (1, 2, 3, 5, 7, 8, 9, 10))


def seed(db: KhanzaDb) -> None:
    db.poli("ANA", "Anak", bpjs="ANA")
    db.poli("INT", "Penyakit Dalam", bpjs="INT")
    db.poli("IGD", "Gawat Darurat")  # not mapped: not reported
    db.doctor("D001", "dr. Ani", bpjs="12345")
    db.doctor("D002", "dr. Budi", bpjs="23456")
    db.doctor("D003", "dr. Citra")  # no BPJS code
    db.schedule("D001", "ANA", "SENIN", "08:00:00", "12:00:00", 20)
    db.schedule("D001", "ANA", "SENIN", "13:00:00", "16:00:00", 10)
    for norm in ("000001", "000002", "000003", "000005", "000007", "000008", "000009", "000010"):
        db.patient(norm)
    # B1: a returning JKN patient through to the medicine (two examinations, two
    # prescriptions: the earliest times count; the second prescription is not ready)
    db.visit(R1, DAY, "07:50:00", norm="000001", poli="ANA", dokter="D001")
    db.booking("B1", R1, DAY, norm="000001", kodepoli="ANA", kodedokter="12345", angka=1)
    db.folder(R1, at(DAY, "08:00"), at(DAY, "08:10"))
    db.exam(R1, DAY, "08:40:00")
    db.exam(R1, DAY, "08:25:00")
    db.prescription("R1-A", R1, "D001", written=(DAY, "08:50:00"), ready=(DAY, "09:20:00"))
    db.prescription("R1-B", R1, "D001", written=(DAY, "09:00:00"))
    # B2: a new patient; the folder reached the poli but nobody received it (zero date);
    # a prescription ready without a written time
    db.visit(R2, DAY, "07:45:00", norm="000002", poli="INT", dokter="D002", baru=True)
    db.booking(
        "B2",
        R2,
        DAY,
        norm="000002",
        kodepoli="INT",
        kodedokter="23456",
        baru=True,
        validasi=at(DAY, "07:30"),
        angka=2,
    )
    db.folder(R2, at(DAY, "08:05"), ZERO_DATETIME)
    db.prescription("R2-A", R2, "D002", written=(ZERO_DATE, ZERO_TIME), ready=(DAY, "10:00:00"))
    # B3: returning, cancelled after task 3
    db.visit(R3, DAY, "08:30:00", norm="000003", poli="ANA", dokter="D001")
    db.booking("B3", R3, DAY, norm="000003", kodepoli="ANA", kodedokter="12345", angka=3)
    db.folder(R3, at(DAY, "09:00"))
    db.cancel("B3", "000003", at(DAY, "09:30"), no_rawat=R3)
    # B4: a failed booking; B5: booked, not checked in, no visit yet; B6: tomorrow
    db.booking("B4", None, DAY, norm="000005", kodepoli="ANA", kodedokter="12345", status="Gagal")
    db.booking(
        "B5", None, DAY, norm="000005", kodepoli="ANA", kodedokter="12345", status="Belum", angka=5
    )
    db.booking(
        "B6",
        None,
        DAY + timedelta(days=1),
        norm="000005",
        kodepoli="ANA",
        kodedokter="12345",
        status="Belum",
    )
    # on-site registrations (no Mobile JKN booking)
    db.visit(
        R7, DAY, "09:00:00", norm="000007", poli="ANA", dokter="D001", kd_pj="UMU", no_reg="007"
    )
    db.folder(R7, at(DAY, "09:10"))
    db.visit(R8, DAY, "09:05:00", norm="000008", poli="ANA", dokter="D003", no_reg="008")
    db.visit(R9, DAY, "09:06:00", norm="000009", poli="IGD", dokter="D001", no_reg="009")
    db.visit(
        R10, DAY, "13:30:00", norm="000010", poli="ANA", dokter="D001", stts="Batal", no_reg="010"
    )


MARIADB_ONLY = pytest.mark.parametrize("khanza", ["mariadb"], indirect=True)
SQLITE_ONLY = pytest.mark.parametrize("khanza", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", params=["mariadb", "sqlite"])
def khanza(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KhanzaDb]:
    if request.param == "mariadb":
        db = KhanzaDb(f"outboxd_khanza_{os.getpid()}").create()
    else:
        db = SqliteKhanzaDb(tmp_path_factory.mktemp("khanza") / "sik.db").create()
    try:
        seed(db)
        yield db
    finally:
        db.drop()


def settings(dsn: str, **values: Any) -> KhanzaSettings:
    return KhanzaSettings.model_validate(
        {"kind": "khanza", "dsn": dsn, "channel": "bpjs", **values}
    )


def read(db: KhanzaDb, zone: ZoneInfo = JAKARTA, **values: Any) -> dict[str, Booking]:
    source = KhanzaSource("rs", settings(db.url, **values), zone)
    return {b.kodebooking: b for b in source.read(DAY, DAY)}


def local(clock: str, zone: ZoneInfo = JAKARTA) -> datetime:
    return at(DAY, clock).replace(tzinfo=zone)


# --- what is read ----------------------------------------------------------------------


def test_the_day_s_mobile_jkn_bookings(khanza):
    found = read(khanza)
    assert sorted(found) == ["B1", "B2", "B3", "B5"]  # not the failed one, not tomorrow's
    b1 = found["B1"]
    assert (b1.no_rawat, b1.service_date, b1.new_patient, b1.cancelled) == (R1, DAY, False, False)
    assert b1.times == {
        3: local("08:00"),
        4: local("08:10"),
        5: local("08:25"),  # the earliest examination
        6: local("08:50"),  # the earliest prescription written
        7: local("09:20"),  # the earliest ready
    }
    assert found["B2"].new_patient is True
    assert found["B5"].times == {} and found["B5"].no_rawat is None


def test_zero_dates_are_absent(khanza):
    b2 = read(khanza)["B2"]
    assert b2.times == {3: local("08:05"), 7: local("10:00")}  # 4 and 6 are zero dates


def test_a_cancellation_and_its_time(khanza):
    b3 = read(khanza)["B3"]
    assert b3.cancelled is True
    assert b3.times == {3: local("09:00"), 99: local("09:30")}


def test_the_add_fields_make_a_valid_antrean_add(khanza):
    b1 = read(khanza)["B1"]
    assert b1.add["namapoli"] == "Anak (BPJS)" and b1.add["namadokter"] == "dr. Ani (BPJS)"
    assert b1.add["kodedokter"] == 12345 and b1.add["jeniskunjungan"] == 1
    assert b1.add["angkaantrean"] == 1 and b1.add["estimasidilayani"] == 1795395600000
    messages, entries = plan_visit(b1, {}, JAKARTA, "bpjs")
    assert [m.key for m in messages] == [
        f"B1:{s}" for s in ("add", *(f"task:{n}" for n in range(3, 8)))
    ]
    assert json.loads(messages[0].payload)["jenispasien"] == "JKN"
    assert all(e["status"] == "queued" for e in entries.values())


def test_the_zone_decides_the_epoch_ms(khanza):
    jakarta, makassar = read(khanza)["B1"], read(khanza, MAKASSAR)["B1"]
    assert makassar.times[3] == local("08:00", MAKASSAR)
    assert epoch_ms(jakarta.times[3], JAKARTA) - epoch_ms(makassar.times[3], MAKASSAR) == 3_600_000


def test_on_site_visits_when_not_jkn_only(khanza):
    found = read(khanza, jkn_only=False, onsite_jeniskunjungan=3)
    assert sorted(found) == sorted(["B1", "B2", "B3", "B5", R7, R8, R10])  # IGD is not mapped
    r7 = found[R7]
    assert r7.no_rawat == R7 and r7.add_problem is None and not r7.cancelled
    assert r7.add["jenispasien"] == "NON JKN" and r7.add["nomorkartu"] == ""
    assert r7.add["kodepoli"] == "ANA" and r7.add["kodedokter"] == 12345
    assert r7.add["jampraktek"] == "08:00-12:00"  # the shift open at 09:00
    assert (r7.add["kuotajkn"], r7.add["sisakuotajkn"]) == (20, 18)  # R1, R3 and R7 minus Batal
    assert r7.add["jeniskunjungan"] == 3 and r7.add["angkaantrean"] == 7
    assert r7.add["estimasidilayani"] == epoch_ms(local("09:00"), JAKARTA)
    assert r7.times == {3: local("09:10")}
    messages, _ = plan_visit(r7, {}, JAKARTA, "bpjs")
    assert [m.key for m in messages] == [f"{R7}:add", f"{R7}:task:3"]
    assert found[R8].add["jenispasien"] == "JKN"
    assert found[R8].add_problem == "doctor 'D003' has no BPJS code in maping_dokter_dpjpvclaim"
    assert found[R10].cancelled is True
    assert found[R10].add["jampraktek"] == "13:00-16:00"  # the afternoon shift


# --- overrides -------------------------------------------------------------------------

OVERRIDES = {
    "1": "SELECT validasi FROM referensi_mobilejkn_bpjs WHERE nobooking = %(kodebooking)s",
    "2": "SELECT tgl_registrasi, jam_reg FROM reg_periksa WHERE no_rawat = %(no_rawat)s",
    "5": "SELECT CONCAT(tgl_perawatan, ' ', jam_rawat) FROM pemeriksaan_ralan"
    " WHERE no_rawat = %(no_rawat)s AND tgl_perawatan = %(tanggal)s"
    " ORDER BY jam_rawat DESC LIMIT 1",
}


def test_overrides_replace_the_stock_sources(khanza):
    found = read(khanza, queries=OVERRIDES)
    b2 = found["B2"]
    assert b2.times[1] == local("07:30")  # check-in
    assert b2.times[2] == local("07:45")  # registration
    assert found["B1"].times[5] == local("08:40")  # the latest examination, as asked
    assert found["B1"].times[1] is None  # validasi is a zero date
    messages, _ = plan_visit(b2, {}, JAKARTA, "bpjs")
    assert [m.key for m in messages] == ["B2:add", "B2:task:1", "B2:task:2", "B2:task:3"]


def test_settled_steps_are_not_queried_again(khanza):
    source = KhanzaSource("rs", settings(khanza.url, queries=OVERRIDES), JAKARTA)
    found = {b.kodebooking: b for b in source.read(DAY, DAY, {"B2": {"add", "1"}})}
    assert 1 not in found["B2"].times and found["B2"].times[2] == local("07:45")


def test_a_broken_override_names_the_query(khanza):
    source = KhanzaSource("rs", settings(khanza.url, queries={"4": "SELECT nope FROM x"}), JAKARTA)
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY)
    assert "queries.4 failed" in str(info.value)
    assert "1146" in str(info.value) or "no such table: x" in str(info.value)


# --- trouble ---------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down(closed_port):
    # refused at once: a connect that waited for its timeout (an hour) would run
    # into the test's timeout
    dsn = f"mysql://u:pw@127.0.0.1:{closed_port}/sik"
    source = KhanzaSource("rs", settings(dsn, connect_timeout="1h"), JAKARTA)
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY)
    assert str(info.value).startswith(f"cannot connect to u@127.0.0.1:{closed_port}/sik:")
    assert "2003" in str(info.value) and "Connection refused" in str(info.value)


@MARIADB_ONLY
def test_a_refused_login_never_shows_the_password(khanza):
    url = khanza.url.replace("mysql://", "mysql://nobody:hunter2secret@", 1).replace("root@", "", 1)
    source = KhanzaSource("rs", settings(url), JAKARTA)
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY)
    assert "Access denied" in str(info.value) and "hunter2secret" not in str(info.value)


@MARIADB_ONLY
def test_a_slow_server_is_given_up_on_after_the_read_timeout(khanza):
    # a query of an hour: only the read timeout, the client's or the server's, can
    # end it within the test's timeout
    slow = {"3": "SELECT SLEEP(3600), NULL FROM DUAL WHERE %(no_rawat)s IS NOT NULL"}
    source = KhanzaSource("rs", settings(khanza.url, queries=slow, read_timeout="0.5s"), JAKARTA)
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY)
    assert "queries.3 failed" in str(info.value)
    assert "1969" in str(info.value) or "2013" in str(info.value)  # server- or client-side


def test_a_read_given_up_on_starts_no_further_query(khanza):
    stop = threading.Event()
    stop.set()
    source = KhanzaSource("rs", settings(khanza.url), JAKARTA)
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY, stop=stop)
    assert str(info.value).endswith("the read was abandoned")


# --- the SQLite file (the demo's Khanza) -----------------------------------------------------


@SQLITE_ONLY
def test_a_slow_sqlite_query_is_interrupted_after_the_read_timeout(khanza):
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
        " SELECT max(i), NULL FROM n WHERE %(no_rawat)s IS NOT NULL"
    )
    source = KhanzaSource(
        "rs", settings(khanza.url, queries={"3": endless}, read_timeout="0.5s"), JAKARTA
    )
    # the query never ends: only the interruption can end the read
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY)
    assert "queries.3 failed" in str(info.value) and "read_timeout (0.5s)" in str(info.value)
    assert read(khanza)["B1"].times[3] == local("08:00")  # the next read is fine


def test_a_missing_sqlite_file_is_an_error_not_an_empty_hospital(tmp_path):
    missing = tmp_path / "nowhere.db"
    source = KhanzaSource("rs", settings(f"sqlite:///{missing}"), JAKARTA)
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY)
    assert str(info.value) == f"cannot connect to sqlite:{missing}: OperationalError 0: " + (
        f"SQLite: no database file at {missing}"
    )
    assert not missing.exists()


@SQLITE_ONLY
def test_the_sqlite_source_only_reads(khanza):
    write = {"3": "DELETE FROM mutasi_berkas WHERE no_rawat = %(no_rawat)s"}
    source = KhanzaSource("rs", settings(khanza.url, queries=write), JAKARTA)
    with pytest.raises(SourceError) as info:
        source.read(DAY, DAY)
    assert "queries.3 failed" in str(info.value) and "readonly" in str(info.value)
    assert read(khanza)["B1"].times[3] == local("08:00")
