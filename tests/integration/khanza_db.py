"""A SIMRS Khanza database of a test's own on the MariaDB test server (the schema of
``tests/data/khanza_schema.sql``) or in a SQLite file (the demo's
Khanza-like tables), and helpers to seed a day of visits."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from daemon.sim import khanza as khanza_sim
from daemon.sim.khanza_sqlite import sqlite_params, sqlite_sql
from tests.services import mariadb_connect, mariadb_url
from tests.support.data import KHANZA_SCHEMA

ZERO_DATETIME, ZERO_DATE, ZERO_TIME = (
    khanza_sim.ZERO_DATETIME,
    khanza_sim.ZERO_DATE,
    khanza_sim.ZERO_TIME,
)


def schema_statements(text: str) -> list[str]:
    """The statements of the dump (comments dropped), FOREIGN_KEY_CHECKS=0 first."""
    lines = [re.sub(r"(^|\s)--(\s.*)?$", "", line).rstrip() for line in text.splitlines()]
    body = "\n".join(line for line in lines if line.strip())
    statements = [s.strip() for s in body.split(";\n") if s.strip()]
    return [s.rstrip(";") for s in statements]


class KhanzaDb:
    """``create()`` makes the database and loads the schema; ``drop()`` removes it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = mariadb_url(name)
        self.conn: Any = None

    def create(self) -> KhanzaDb:
        admin = mariadb_connect()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
            cursor.execute(f"CREATE DATABASE `{self.name}` CHARACTER SET latin1")
        admin.close()
        self.conn = mariadb_connect(self.name)
        with self.conn.cursor() as cursor:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for statement in schema_statements(KHANZA_SCHEMA.read_text()):
                cursor.execute(statement)
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")  # the dump turns them back on
        return self

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        admin = mariadb_connect()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        admin.close()

    def execute(self, sql: str, params: Any = None) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(sql, params)

    def upsert(self, key: str, columns: Sequence[str]) -> str:
        """The clause that makes an INSERT update ``columns`` of a row already there."""
        return " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in columns)

    def insert(self, table: str, **values: Any) -> None:
        columns = ", ".join(f"`{c}`" for c in values)
        marks = ", ".join(["%s"] * len(values))
        self.execute(f"INSERT INTO `{table}` ({columns}) VALUES ({marks})", list(values.values()))

    def update(self, table: str, where: dict[str, Any], **values: Any) -> None:
        sets = ", ".join(f"`{c}` = %s" for c in values)
        conds = " AND ".join(f"`{c}` = %s" for c in where)
        self.execute(
            f"UPDATE `{table}` SET {sets} WHERE {conds}",
            [*values.values(), *where.values()],
        )

    # --- master data ------------------------------------------------------------------

    def poli(self, kd: str, name: str, bpjs: str | None = None) -> None:
        self.insert(
            "poliklinik", kd_poli=kd, nm_poli=name, registrasi=0, registrasilama=0, status="1"
        )
        if bpjs is not None:
            self.insert(
                "maping_poli_bpjs", kd_poli_rs=kd, kd_poli_bpjs=bpjs, nm_poli_bpjs=f"{name} (BPJS)"
            )

    def doctor(self, kd: str, name: str, bpjs: str | None = None) -> None:
        self.insert("dokter", kd_dokter=kd, nm_dokter=name)
        if bpjs is not None:
            self.insert(
                "maping_dokter_dpjpvclaim",
                kd_dokter=kd,
                kd_dokter_bpjs=bpjs,
                nm_dokter_bpjs=f"{name} (BPJS)",
            )

    def schedule(
        self, kd_dokter: str, kd_poli: str, hari: str, start: str, end: str, kuota: int
    ) -> None:
        self.insert(
            "jadwal",
            kd_dokter=kd_dokter,
            hari_kerja=hari,
            jam_mulai=start,
            jam_selesai=end,
            kd_poli=kd_poli,
            kuota=kuota,
        )

    def patient(self, norm: str, name: str = "Pasien", kartu: str = "0001112223334") -> None:
        self.insert(
            "pasien",
            no_rkm_medis=norm,
            nm_pasien=name,
            no_ktp=f"32{norm:0>14}",
            nm_ibu="Ibu",
            umur="30 Th",
            pnd="-",
            namakeluarga="-",
            kd_pj="BPJ",
            no_peserta=kartu,
            no_tlp="0812000" + norm[-4:],
            kd_kel=0,
            kd_kec=0,
            kd_kab=0,
            pekerjaanpj="-",
            alamatpj="-",
            kelurahanpj="-",
            kecamatanpj="-",
            kabupatenpj="-",
            perusahaan_pasien="-",
            suku_bangsa=0,
            bahasa_pasien=0,
            cacat_fisik=0,
            email="",
            nip="",
            kd_prop=0,
            propinsipj="-",
        )

    # --- a visit ------------------------------------------------------------------------

    def visit(
        self,
        no_rawat: str,
        day: date,
        jam: str,
        *,
        norm: str,
        poli: str,
        dokter: str,
        baru: bool = False,
        stts: str = "Belum",
        kd_pj: str = "BPJ",
        no_reg: str = "001",
    ) -> None:
        self.insert(
            "reg_periksa",
            no_reg=no_reg,
            no_rawat=no_rawat,
            tgl_registrasi=day,
            jam_reg=jam,
            kd_dokter=dokter,
            no_rkm_medis=norm,
            kd_poli=poli,
            p_jawab="-",
            almt_pj="-",
            hubunganpj="-",
            biaya_reg=0,
            stts=stts,
            stts_daftar="Baru" if baru else "Lama",
            status_lanjut="Ralan",
            kd_pj=kd_pj,
            umurdaftar=30,
            sttsumur="Th",
            status_bayar="Belum Bayar",
            status_poli="Baru" if baru else "Lama",
        )

    def booking(
        self,
        nobooking: str,
        no_rawat: str | None,
        day: date,
        *,
        norm: str,
        kodepoli: str,
        kodedokter: str,
        baru: bool = False,
        status: str = "Checkin",
        validasi: datetime | str = ZERO_DATETIME,
        angka: int = 1,
    ) -> None:
        self.insert(
            "referensi_mobilejkn_bpjs",
            nobooking=nobooking,
            no_rawat=no_rawat,
            nomorkartu="0001112223334",
            nik="3200000000000001",
            nohp="081200001111",
            kodepoli=kodepoli,
            pasienbaru="1" if baru else "0",
            norm=norm,
            tanggalperiksa=day,
            kodedokter=kodedokter,
            jampraktek="08:00-14:00",
            jeniskunjungan="1 (Rujukan FKTP)",
            nomorreferensi="0301R0011124B000123",
            nomorantrean=f"A-{angka:03d}",
            angkaantrean=str(angka),
            estimasidilayani="1795395600000",
            sisakuotajkn=10,
            kuotajkn=30,
            sisakuotanonjkn=10,
            kuotanonjkn=30,
            status=status,
            validasi=validasi,
            statuskirim="Belum",
        )

    def folder(
        self, no_rawat: str, dikirim: Any = ZERO_DATETIME, diterima: Any = ZERO_DATETIME
    ) -> None:
        """mutasi_berkas: task 3 (sent to the poli) and 4 (received there)."""
        self.execute(
            "INSERT INTO mutasi_berkas (no_rawat, status, dikirim, diterima, kembali, tidakada,"
            " ranap) VALUES (%s, 'Sudah Dikirim', %s, %s, %s, %s, %s)"
            + self.upsert("no_rawat", ("dikirim", "diterima")),
            [no_rawat, dikirim, diterima, ZERO_DATETIME, ZERO_DATETIME, ZERO_DATETIME],
        )

    def exam(self, no_rawat: str, day: Any, jam: Any, nip: str = "P001") -> None:
        """pemeriksaan_ralan: the earliest is task 5."""
        self.insert(
            "pemeriksaan_ralan",
            no_rawat=no_rawat,
            tgl_perawatan=day,
            jam_rawat=jam,
            tensi="120/80",
            spo2="98",
            kesadaran="Compos Mentis",
            rtl="-",
            penilaian="-",
            instruksi="-",
            evaluasi="-",
            nip=nip,
        )

    def prescription(
        self,
        no_resep: str,
        no_rawat: str,
        dokter: str,
        *,
        written: tuple[Any, Any] = (ZERO_DATE, ZERO_TIME),
        ready: tuple[Any, Any] = (ZERO_DATE, ZERO_TIME),
    ) -> None:
        """resep_obat: task 6 = written (tgl/jam_peresepan), 7 = ready (tgl_perawatan, jam)."""
        self.execute(
            "INSERT INTO resep_obat (no_resep, tgl_perawatan, jam, no_rawat, kd_dokter,"
            " tgl_peresepan, jam_peresepan, status, tgl_penyerahan, jam_penyerahan)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'ralan', %s, %s)"
            + self.upsert("no_resep", ("tgl_perawatan", "jam", "tgl_peresepan", "jam_peresepan")),
            [
                no_resep,
                ready[0],
                ready[1],
                no_rawat,
                dokter,
                written[0],
                written[1],
                ZERO_DATE,
                ZERO_TIME,
            ],
        )

    def cancel(
        self, nobooking: str, norm: str, when: datetime, no_rawat: str | None = None
    ) -> None:
        """A Mobile JKN cancellation (task 99 at ``when``)."""
        self.insert(
            "referensi_mobilejkn_bpjs_batal",
            no_rkm_medis=norm,
            no_rawat_batal=no_rawat,
            nomorreferensi="0301R0011124B000123",
            tanggalbatal=when,
            keterangan="pasien batal",
            statuskirim="Belum",
            nobooking=nobooking,
        )
        self.update("referensi_mobilejkn_bpjs", {"nobooking": nobooking}, status="Batal")
        if no_rawat is not None:
            self.update("reg_periksa", {"no_rawat": no_rawat}, stts="Batal")


def at(day: date, clock: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(clock))


def no_rawat(day: date, n: int) -> str:
    return f"{day:%Y/%m/%d}/{n:06d}"


class SqliteKhanzaDb(KhanzaDb):
    """The same helpers on a Khanza-like SQLite file (the demo's tables,
    ``daemon.sim.khanza.SCHEMA``), read by the source through ``sqlite:`` DSNs."""

    def __init__(self, path: Path) -> None:
        self.name = path.stem
        self.path = path
        self.url = f"sqlite:///{path}"
        self.conn: Any = None

    def create(self) -> SqliteKhanzaDb:
        self.path.unlink(missing_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        for statement in khanza_sim.SCHEMA:
            self.conn.execute(statement)
        return self

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def execute(self, sql: str, params: Any = None) -> None:
        named = None if params is None else isinstance(params, dict)
        self.conn.execute(sqlite_sql(sql, named), sqlite_params(params))

    def insert(self, table: str, **values: Any) -> None:
        known = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
        super().insert(table, **{k: v for k, v in values.items() if k in known})

    def upsert(self, key: str, columns: Sequence[str]) -> str:
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns)
        return f" ON CONFLICT ({key}) DO UPDATE SET {sets}"
