"""SIMRS Khanza (MariaDB/MySQL) as a source of BPJS Antrean bookings and task times.

Synchronous PyMySQL, run by the poller on a worker thread. ``KhanzaSource.read``
opens a connection, reads in one read-only consistent snapshot, closes it, and
returns ``Booking`` records (``daemon.bpjs.plan``); it never loops, never
writes, and raises ``SourceError`` (one line, no password) when the database is
down, refuses, is too slow or a query is wrong.

What it reads (the queries are the named SQL strings below):

- ``JKN_BOOKINGS``: Mobile JKN bookings (``referensi_mobilejkn_bpjs``, status not
  'Gagal') of the service dates; the add fields as Khanza stored them, names from
  the mapping tables (``maping_poli_bpjs``, ``maping_dokter_dpjpvclaim``), falling
  back to Khanza's own poli and doctor names.
- ``ONSITE_VISITS`` (``jkn_only: false``): outpatient visits in ``reg_periksa``
  without such a booking, whose poli is mapped to a BPJS poli; kodebooking is the
  no_rawat, codes come from the mapping tables, ``jampraktek`` and the quota from
  ``jadwal`` (the shift of that weekday still open at registration),
  ``estimasidilayani`` is the registration time.
- Task times, stock (``TASK_TIMES``): 3 ``mutasi_berkas.dikirim``, 4
  ``mutasi_berkas.diterima``, 5 ``pemeriksaan_ralan`` (tgl_perawatan + jam_rawat),
  6 ``resep_obat`` (tgl_peresepan + jam_peresepan), 7 ``resep_obat`` (tgl_perawatan +
  jam), status 'ralan', 99 ``referensi_mobilejkn_bpjs_batal.tanggalbatal``; where a
  visit has several rows the earliest time counts. Tasks 1 and 2 have no stock
  source. ``queries`` in the YAML replaces any of them with a per-booking query
  (see ``KhanzaSettings`` in ``daemon/sources/kinds/khanza.py`` for its shape).
- Cancelled: ``reg_periksa.stts = 'Batal'``, booking status 'Batal', a row in
  ``referensi_mobilejkn_bpjs_batal``, or a time for task 99.

Every query runs under ``read_timeout``, on the client and, where the server has
the setting, on the server too (``max_statement_time``/``max_execution_time``).

Zero dates ('0000-00-00 00:00:00', '0000-00-00', and a TIME of 00:00:00 beside a
date), NULLs and unreadable values are "not yet". DATETIMEs are local wall-clock
times: they are given the configured zone here, so every time leaves aware.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql

from daemon.bpjs.plan import Booking, epoch_ms
from daemon.sources.base import SourceError
from daemon.sources.khanza.settings import KhanzaSettings

log = logging.getLogger("outboxd.sources.khanza")

TASKS = (1, 2, 3, 4, 5, 6, 7, 99)
CANCELLED = 99
CHUNK = 500  # keys per IN (…) list
DSN_SCHEMES = ("mysql", "mariadb")
SQLITE_SCHEME = "sqlite"
Connect = Callable[..., Any]
# A ``sqlite:`` DSN is read through the demo's Khanza-like SQLite adapter. It is
# not production code, so it lives with the simulators and is imported by name,
# only when such a DSN is used.
SQLITE_DRIVER = "daemon.sim.khanza_sqlite"
DSN_OPTIONS = ("charset", "unix_socket")
HARI = ("SENIN", "SELASA", "RABU", "KAMIS", "JUMAT", "SABTU", "AKHAD")  # jadwal.hari_kerja
WEEKDAYS = "'AKHAD','SENIN','SELASA','RABU','KAMIS','JUMAT','SABTU'"  # by DAYOFWEEK: 1 Sunday

# --- the SQL --------------------------------------------------------------------------

JKN_BOOKINGS = """
SELECT b.nobooking, b.no_rawat, b.tanggalperiksa, b.pasienbaru, b.status,
       b.nomorkartu, b.nik, b.nohp, b.kodepoli, b.norm, b.kodedokter, b.jampraktek,
       b.jeniskunjungan, b.nomorreferensi, b.nomorantrean, b.angkaantrean,
       b.estimasidilayani, b.sisakuotajkn, b.kuotajkn, b.sisakuotanonjkn, b.kuotanonjkn,
       r.stts,
       COALESCE((SELECT MAX(mp.nm_poli_bpjs) FROM maping_poli_bpjs mp
                 WHERE mp.kd_poli_bpjs = b.kodepoli), pl.nm_poli, '') AS namapoli,
       COALESCE((SELECT MAX(md.nm_dokter_bpjs) FROM maping_dokter_dpjpvclaim md
                 WHERE md.kd_dokter_bpjs = b.kodedokter), d.nm_dokter, '') AS namadokter,
       EXISTS (SELECT 1 FROM referensi_mobilejkn_bpjs_batal bb
               WHERE bb.nobooking = b.nobooking) AS batal
FROM referensi_mobilejkn_bpjs b
LEFT JOIN reg_periksa r ON r.no_rawat = b.no_rawat
LEFT JOIN poliklinik pl ON pl.kd_poli = r.kd_poli
LEFT JOIN dokter d ON d.kd_dokter = r.kd_dokter
WHERE b.tanggalperiksa BETWEEN %(first)s AND %(last)s AND b.status <> 'Gagal'
ORDER BY b.tanggalperiksa, b.nobooking
"""


def _shift(column: str) -> str:
    """``column`` of the doctor's shift at that poli on the visit's weekday: the
    first one still open at registration (``jam_reg``), else the day's first.
    (Two subqueries, not ``ORDER BY jam_selesai < r.jam_reg``: SQLite, the demo's
    Khanza, cannot see an outer column in a subquery's ORDER BY.)"""
    day = f"""j.kd_dokter = r.kd_dokter AND j.kd_poli = r.kd_poli
            AND j.hari_kerja = ELT(DAYOFWEEK(r.tgl_registrasi), {WEEKDAYS})"""
    return f"""COALESCE(
         (SELECT {column} FROM jadwal j WHERE {day}
            AND (j.jam_selesai IS NULL OR j.jam_selesai >= r.jam_reg)
          ORDER BY j.jam_mulai LIMIT 1),
         (SELECT {column} FROM jadwal j WHERE {day} ORDER BY j.jam_mulai LIMIT 1))"""


ONSITE_VISITS = f"""
SELECT r.no_rawat, r.no_reg, r.tgl_registrasi, r.jam_reg, r.kd_dokter, r.kd_poli, r.stts,
       r.stts_daftar, r.kd_pj, r.no_rkm_medis, p.no_ktp, p.no_tlp, p.no_peserta,
       mp.kd_poli_bpjs, COALESCE(pl.nm_poli, mp.nm_poli_bpjs, '') AS namapoli,
       (SELECT MAX(md.kd_dokter_bpjs) FROM maping_dokter_dpjpvclaim md
        WHERE md.kd_dokter = r.kd_dokter) AS kd_dokter_bpjs,
       COALESCE(d.nm_dokter, (SELECT MAX(md.nm_dokter_bpjs) FROM maping_dokter_dpjpvclaim md
                              WHERE md.kd_dokter = r.kd_dokter), '') AS namadokter,
       {_shift("CONCAT(LEFT(j.jam_mulai, 5), '-', LEFT(j.jam_selesai, 5))")} AS jampraktek,
       {_shift("j.kuota")} AS kuota,
       (SELECT COUNT(*) FROM reg_periksa r2
        WHERE r2.kd_dokter = r.kd_dokter AND r2.kd_poli = r.kd_poli
          AND r2.tgl_registrasi = r.tgl_registrasi AND r2.stts <> 'Batal') AS terdaftar
FROM reg_periksa r
JOIN maping_poli_bpjs mp ON mp.kd_poli_rs = r.kd_poli
LEFT JOIN pasien p ON p.no_rkm_medis = r.no_rkm_medis
LEFT JOIN poliklinik pl ON pl.kd_poli = r.kd_poli
LEFT JOIN dokter d ON d.kd_dokter = r.kd_dokter
WHERE r.tgl_registrasi BETWEEN %(first)s AND %(last)s AND r.status_lanjut = 'Ralan'
  AND NOT EXISTS (SELECT 1 FROM referensi_mobilejkn_bpjs b WHERE b.no_rawat = r.no_rawat)
ORDER BY r.tgl_registrasi, r.no_rawat
"""


@dataclass(frozen=True)
class StockQuery:
    """A task's stock time source for many visits at once: ``{keys}`` becomes the
    placeholders; each row is the key (no_rawat or kodebooking), then the time as
    one column or a date and a time."""

    by: str  # "no_rawat" or "kodebooking"
    sql: str


TASK_TIMES: dict[int, StockQuery] = {
    3: StockQuery(
        "no_rawat", "SELECT no_rawat, dikirim FROM mutasi_berkas WHERE no_rawat IN ({keys})"
    ),
    4: StockQuery(
        "no_rawat", "SELECT no_rawat, diterima FROM mutasi_berkas WHERE no_rawat IN ({keys})"
    ),
    5: StockQuery(
        "no_rawat",
        "SELECT no_rawat, tgl_perawatan, jam_rawat FROM pemeriksaan_ralan"
        " WHERE no_rawat IN ({keys})",
    ),
    6: StockQuery(
        "no_rawat",
        "SELECT no_rawat, tgl_peresepan, jam_peresepan FROM resep_obat"
        " WHERE status = 'ralan' AND no_rawat IN ({keys})",
    ),
    7: StockQuery(
        "no_rawat",
        "SELECT no_rawat, tgl_perawatan, jam FROM resep_obat"
        " WHERE status = 'ralan' AND no_rawat IN ({keys})",
    ),
    99: StockQuery(
        "kodebooking",
        "SELECT nobooking, tanggalbatal FROM referensi_mobilejkn_bpjs_batal"
        " WHERE nobooking IN ({keys})",
    ),
}

SNAPSHOT = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"


# --- values -------------------------------------------------------------------------


def local_time(value: Any, zone: tzinfo) -> datetime | None:
    """A Khanza DATETIME as an aware datetime in ``zone``, or None for "not yet".

    ``value`` is a ``datetime``, or text 'YYYY-MM-DD HH:MM:SS' (as PyMySQL returns a
    zero or invalid DATETIME, and as CONCAT builds one). A zero date, NULL, a DATE
    alone (no time of day) and anything unreadable are None.
    """
    if _is_date_only(value):
        return None
    found = _datetime(value)
    return None if found is None else found.replace(tzinfo=zone)


def local_pair(day: Any, clock: Any, zone: tzinfo) -> datetime | None:
    """A Khanza DATE and TIME pair as an aware datetime in ``zone``, or None.

    ``clock`` is a ``timedelta`` (PyMySQL's TIME), a ``time`` or text. A zero or
    NULL date, and a TIME of 00:00:00 (Khanza's "not yet" for a time), are None.
    """
    found_day = _date(day)
    found_clock = _clock(clock)
    if found_day is None or found_clock is None:
        return None
    return datetime.combine(found_day, found_clock).replace(tzinfo=zone)


def _is_date_only(value: Any) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _text_of(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    text = _text_of(value)
    if text is None or text.startswith("0000-00-00") or len(text.strip()) <= len("YYYY-MM-DD"):
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text_of(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None  # '0000-00-00' and other impossible dates


def _clock(value: Any) -> time | None:
    if isinstance(value, timedelta):
        if not timedelta(0) < value < timedelta(days=1):
            return None  # 00:00:00 is Khanza's "not yet"; beyond a day is no clock time
        return (datetime.min + value).time()
    if isinstance(value, time):
        return None if value == time(0) else value.replace(tzinfo=None)
    text = _text_of(value)
    if text is None:
        return None
    try:
        found = time.fromisoformat(text.strip())
    except ValueError:
        return None
    return None if found == time(0) else found


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = _text_of(value)
    return text.strip() if text is not None else str(value).strip()


def _integer(value: Any) -> Any:
    """An integer from a number or digits; anything else as it was (the payload
    check then names the field)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = _text_of(value)
    if text is not None and text.strip().isdigit():
        return int(text.strip())
    return value


def _leading_integer(value: Any) -> Any:
    """``'1 (Rujukan FKTP)'`` → 1."""
    text = _text(value)
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else value


# --- the DSN ------------------------------------------------------------------------


def connect_args(dsn: str) -> dict[str, Any]:
    """PyMySQL connect arguments from ``mysql://user:pass@host:port/db?charset=…``,
    or ``{"path": …}`` for a Khanza-like SQLite file (``sqlite:///relative/path``,
    ``sqlite:////absolute/path``: the demo's); ``SourceError`` for a DSN it cannot use
    (the password never shown)."""
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise SourceError(f"dsn: cannot read it ({exc})") from None
    if parts.scheme == SQLITE_SCHEME:
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if parts.netloc or not path or parts.query:
            raise SourceError("dsn: expected sqlite:///PATH (a Khanza-like SQLite file)")
        return {"path": path}
    if parts.scheme not in DSN_SCHEMES:
        raise SourceError(
            f"dsn: expected mysql://USER:PASSWORD@HOST:PORT/DATABASE (or sqlite:///PATH), "
            f"got scheme {parts.scheme or '(none)'!r}"
        )
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise SourceError("dsn: no database name (mysql://USER:PASSWORD@HOST:PORT/DATABASE)")
    args: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": database,
        "charset": "utf8mb4",
    }
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in DSN_OPTIONS:
            raise SourceError(f"dsn: unknown option {key!r} (options: {', '.join(DSN_OPTIONS)})")
        args[key] = value
    return args


def connect_function(args: Mapping[str, Any]) -> Connect:
    """What opens a connection for these arguments (see ``connect_args``)."""
    if "path" in args:
        connect: Connect = importlib.import_module(SQLITE_DRIVER).connect
        return connect
    return pymysql.connect


def describe(args: Mapping[str, Any]) -> str:
    """Where a connection goes, without the password."""
    if "path" in args:
        return f"sqlite:{args['path']}"
    where = args.get("unix_socket") or f"{args['host']}:{args['port']}"
    return f"{args['user']}@{where}/{args['database']}"


# --- the source ---------------------------------------------------------------------


@dataclass
class _Row:
    """A booking as read, before its task times."""

    kodebooking: str
    no_rawat: str | None
    service_date: date
    new_patient: bool
    add: dict[str, Any]
    cancelled: bool
    problem: str | None = None


class KhanzaSource:
    """Reads one Khanza database; one ``read`` is one connection, one snapshot.
    ``connect`` replaces the driver's connect function (by default PyMySQL's, or
    the SQLite adapter's ``connect`` for a ``sqlite:`` DSN)."""

    def __init__(
        self,
        name: str,
        settings: KhanzaSettings,
        zone: tzinfo,
        connect: Connect | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.zone = zone
        self._connect = connect
        self.overrides = {int(k): v for k, v in settings.queries.items()}
        self._stop = threading.Event()

    def read(
        self,
        first: date,
        last: date,
        settled: Mapping[str, Collection[str]] | None = None,
        stop: threading.Event | None = None,
    ) -> list[Booking]:
        """The bookings of the service dates ``first``..``last`` with their task times.
        ``settled`` (kodebooking → steps already queued or sent) spares the per-booking
        override queries of those steps; their times are left out. Once ``stop`` is
        set (the caller gave up on this read) no further query starts."""
        self._stop = stop or threading.Event()
        args = connect_args(self.settings.dsn.get_secret_value())
        where = describe(args)
        connect = self._connect or connect_function(args)
        try:
            conn = connect(
                **args,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
                write_timeout=self.settings.read_timeout,
                autocommit=True,
            )
        except (pymysql.MySQLError, OSError) as exc:
            raise SourceError(f"cannot connect to {where}: {_why(exc)}") from None
        try:
            with conn.cursor() as cursor:
                _limit_statements(cursor, self.settings.read_timeout)
                cursor.execute(SNAPSHOT)
                rows = self._bookings(cursor, first, last)
                times = self._times(cursor, rows, settled or {})
                cursor.execute("ROLLBACK")
        except SourceError as exc:
            raise SourceError(f"{where}: {exc}") from None
        except (pymysql.MySQLError, OSError) as exc:
            raise SourceError(f"reading {where} failed: {_why(exc)}") from None
        finally:
            _close(conn)
        return [
            Booking(
                kodebooking=row.kodebooking,
                service_date=row.service_date,
                new_patient=row.new_patient,
                add=row.add,
                times=times.get(row.kodebooking, {}),
                cancelled=row.cancelled
                or times.get(row.kodebooking, {}).get(CANCELLED) is not None,
                no_rawat=row.no_rawat,
                add_problem=row.problem,
            )
            for row in rows
        ]

    def query(self, sql: str, params: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The columns and rows of one query of the operator's own (an export), run
        in a read-only snapshot under ``read_timeout``; ``SourceError`` says why not."""
        args = connect_args(self.settings.dsn.get_secret_value())
        where = describe(args)
        connect = self._connect or connect_function(args)
        try:
            conn = connect(
                **args,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
                write_timeout=self.settings.read_timeout,
                autocommit=True,
            )
        except (pymysql.MySQLError, OSError) as exc:
            raise SourceError(f"cannot connect to {where}: {_why(exc)}") from None
        try:
            with conn.cursor() as cursor:
                _limit_statements(cursor, self.settings.read_timeout)
                cursor.execute(SNAPSHOT)
                rows = _fetch(cursor, "the query", sql, dict(params))
                columns = [d[0] for d in cursor.description or ()]
                cursor.execute("ROLLBACK")
        except SourceError as exc:
            raise SourceError(f"{where}: {exc}") from None
        except (pymysql.MySQLError, OSError) as exc:
            raise SourceError(f"reading {where} failed: {_why(exc)}") from None
        finally:
            _close(conn)
        return columns, [tuple(row) for row in rows]

    # --- bookings -------------------------------------------------------------------

    def _bookings(self, cursor: Any, first: date, last: date) -> list[_Row]:
        window = {"first": first, "last": last}
        found = _fetch(
            cursor, "reading the Mobile JKN bookings", JKN_BOOKINGS, window, stop=self._stop
        )
        rows = [self._jkn(_named(cursor, r)) for r in found]
        if not self.settings.jkn_only:
            found = _fetch(
                cursor, "reading the on-site visits", ONSITE_VISITS, window, stop=self._stop
            )
            rows += [self._onsite(_named(cursor, r)) for r in found]
        return [r for r in rows if r is not None]

    def _jkn(self, r: dict[str, Any]) -> _Row | None:
        day = _date(r["tanggalperiksa"])
        if day is None:
            return None
        add = {
            "jenispasien": "JKN",
            "nomorkartu": _text(r["nomorkartu"]),
            "nik": _text(r["nik"]),
            "nohp": _text(r["nohp"]),
            "kodepoli": _text(r["kodepoli"]),
            "namapoli": _text(r["namapoli"]),
            "norm": _text(r["norm"]),
            "kodedokter": _integer(r["kodedokter"]),
            "namadokter": _text(r["namadokter"]),
            "jampraktek": _text(r["jampraktek"]),
            "jeniskunjungan": _leading_integer(r["jeniskunjungan"]),
            "nomorreferensi": _text(r["nomorreferensi"]),
            "nomorantrean": _text(r["nomorantrean"]),
            "angkaantrean": _integer(r["angkaantrean"]),
            "estimasidilayani": _integer(r["estimasidilayani"]),
            "sisakuotajkn": _integer(r["sisakuotajkn"]),
            "kuotajkn": _integer(r["kuotajkn"]),
            "sisakuotanonjkn": _integer(r["sisakuotanonjkn"]),
            "kuotanonjkn": _integer(r["kuotanonjkn"]),
            "keterangan": "",
        }
        return _Row(
            kodebooking=_text(r["nobooking"]),
            no_rawat=_text(r["no_rawat"]) or None,
            service_date=day,
            new_patient=_text(r["pasienbaru"]) == "1",
            add=add,
            cancelled=r["status"] == "Batal" or r["stts"] == "Batal" or bool(r["batal"]),
        )

    def _onsite(self, r: dict[str, Any]) -> _Row | None:
        day = _date(r["tgl_registrasi"])
        if day is None:
            return None
        jkn = _text(r["kd_pj"]) in self.settings.jkn_payers
        kuota = _integer(r["kuota"]) if r["kuota"] is not None else 0
        left = max(kuota - int(r["terdaftar"] or 0), 0) if isinstance(kuota, int) else kuota
        registered = local_pair(r["tgl_registrasi"], r["jam_reg"], self.zone)
        add = {
            "jenispasien": "JKN" if jkn else "NON JKN",
            "nomorkartu": _text(r["no_peserta"]) if jkn else "",
            "nik": _text(r["no_ktp"]),
            "nohp": _text(r["no_tlp"]),
            "kodepoli": _text(r["kd_poli_bpjs"]),
            "namapoli": _text(r["namapoli"]),
            "norm": _text(r["no_rkm_medis"]),
            "kodedokter": _integer(r["kd_dokter_bpjs"]),
            "namadokter": _text(r["namadokter"]),
            "jampraktek": _text(r["jampraktek"]),
            "jeniskunjungan": self.settings.onsite_jeniskunjungan,
            "nomorreferensi": "",
            "nomorantrean": _text(r["no_reg"]),
            "angkaantrean": _integer(r["no_reg"]),
            "estimasidilayani": None if registered is None else epoch_ms(registered, self.zone),
            "sisakuotajkn": left,
            "kuotajkn": kuota,
            "sisakuotanonjkn": left,
            "kuotanonjkn": kuota,
            "keterangan": "",
        }
        problem = None
        if not _text(r["kd_dokter_bpjs"]):
            problem = (
                f"doctor {_text(r['kd_dokter'])!r} has no BPJS code in maping_dokter_dpjpvclaim"
            )
        elif r["jampraktek"] is None:
            problem = (
                f"no schedule in jadwal for doctor {_text(r['kd_dokter'])!r} at poli "
                f"{_text(r['kd_poli'])!r} on {HARI[day.weekday()]} {day.isoformat()}"
            )
        elif registered is None:
            problem = "the visit has no registration time (jam_reg)"
        no_rawat = _text(r["no_rawat"])
        return _Row(
            kodebooking=no_rawat,
            no_rawat=no_rawat,
            service_date=day,
            new_patient=_text(r["stts_daftar"]) == "Baru",
            add=add,
            cancelled=r["stts"] == "Batal",
            problem=problem,
        )

    # --- task times -----------------------------------------------------------------

    def _times(
        self,
        cursor: Any,
        rows: Sequence[_Row],
        settled: Mapping[str, Collection[str]],
    ) -> dict[str, dict[int, datetime | None]]:
        times: dict[str, dict[int, datetime | None]] = {r.kodebooking: {} for r in rows}
        for task in TASKS:
            if task in self.overrides:
                self._override(cursor, task, rows, settled, times)
            elif task in TASK_TIMES:
                self._stock(cursor, task, TASK_TIMES[task], rows, times)
        return times

    def _stock(
        self,
        cursor: Any,
        task: int,
        query: StockQuery,
        rows: Sequence[_Row],
        times: dict[str, dict[int, datetime | None]],
    ) -> None:
        by_key: dict[str, list[str]] = {}
        for row in rows:
            key = row.no_rawat if query.by == "no_rawat" else row.kodebooking
            if key:
                by_key.setdefault(key, []).append(row.kodebooking)
        keys = sorted(by_key)
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            sql = query.sql.format(keys=", ".join(["%s"] * len(chunk)))
            for found in _fetch(
                cursor, f"reading the times of task {task}", sql, chunk, stop=self._stop
            ):
                moment = self._moment(found[1:])
                for kodebooking in by_key.get(_text(found[0]), ()):
                    known = times[kodebooking].get(task)
                    if moment is not None and (known is None or moment < known):
                        times[kodebooking][task] = moment

    def _override(
        self,
        cursor: Any,
        task: int,
        rows: Sequence[_Row],
        settled: Mapping[str, Collection[str]],
        times: dict[str, dict[int, datetime | None]],
    ) -> None:
        sql = self.overrides[task]
        for row in rows:
            if str(task) in settled.get(row.kodebooking, ()):
                continue
            params = {
                "no_rawat": row.no_rawat,
                "kodebooking": row.kodebooking,
                "tanggal": row.service_date,
            }
            found = _fetch(cursor, f"queries.{task}", sql, params, one=True, stop=self._stop)
            if found:
                times[row.kodebooking][task] = self._moment(found[0])

    def _moment(self, columns: Sequence[Any]) -> datetime | None:
        if not columns:
            return None
        if len(columns) == 1:
            return local_time(columns[0], self.zone)
        return local_pair(columns[0], columns[1], self.zone)


def _fetch(
    cursor: Any,
    what: str,
    sql: str,
    params: Any,
    one: bool = False,
    stop: threading.Event | None = None,
) -> list[Any]:
    """Run one query; its rows (the first only with ``one``). A failure says which."""
    if stop is not None and stop.is_set():
        raise SourceError("the read was abandoned")
    try:
        cursor.execute(sql, params)
        if one:
            first = cursor.fetchone()
            return [] if first is None else [first]
        return list(cursor.fetchall())
    except (pymysql.MySQLError, OSError) as exc:
        raise SourceError(f"{what} failed: {_why(exc)}") from None


def _limit_statements(cursor: Any, seconds: float) -> None:
    """Have the server itself stop a query after ``seconds`` (MariaDB 10.1+, MySQL
    5.7.8+), so a read given up on does not run on, holding its table locks."""
    for sql, value in (
        ("SET SESSION max_statement_time = %s", seconds),  # MariaDB: seconds
        ("SET SESSION max_execution_time = %s", int(seconds * 1000)),  # MySQL: ms
    ):
        try:
            cursor.execute(sql, (value,))
            return
        except pymysql.MySQLError:
            continue


def _named(cursor: Any, row: Sequence[Any]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def _why(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if isinstance(exc, pymysql.MySQLError) and len(args) == 2:
        return f"{type(exc).__name__} {args[0]}: {' '.join(str(args[1]).split())}"
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # already gone: nothing to release
        log.debug("closing the Khanza connection failed", exc_info=True)
