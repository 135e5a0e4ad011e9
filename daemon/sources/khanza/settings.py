"""The settings of a ``khanza`` source: the database, the window, the queries."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator

from daemon.bpjs.plan import CancelTime
from daemon.domain.fields import Flag, Integer, PositiveDuration, whole
from daemon.sources.base import SourceSettings

MAX_CATCHUP_DAYS = 7  # how far back a stale cursor is followed


class KhanzaSettings(SourceSettings):
    """A SIMRS Khanza database (MariaDB/MySQL) polled for BPJS Antrean task times
    (``outboxd run poller``; code in ``daemon/sources/khanza.py``)."""

    kind: Literal["khanza"]
    # mysql://USER:PASSWORD@HOST[:PORT]/DATABASE[?charset=utf8mb4] (a read-only user is
    # enough; the poller only reads), or sqlite:///PATH for a Khanza-like SQLite file
    # (the demo's). Checked when the poller connects.
    dsn: SecretStr
    # Per-task SQL replacing the stock source of a task's time. Keys "1".."7" and "99";
    # the stock sources are 3 mutasi_berkas.dikirim, 4 mutasi_berkas.diterima, 5 the
    # earliest pemeriksaan_ralan, 6 resep_obat tgl_peresepan + jam_peresepan, 7 resep_obat
    # tgl_perawatan + jam, 99 referensi_mobilejkn_bpjs_batal.tanggalbatal; 1 and 2 have none.
    # A query runs once per booking with the named parameters %(no_rawat)s,
    # %(kodebooking)s and %(tanggal)s (the service date); write a literal % as %%. Its
    # first row is the time: one column (a DATETIME, or text 'YYYY-MM-DD HH:MM:SS') or
    # two (a DATE and a TIME). No row, NULL, or a zero date ('0000-00-00…', or a TIME of
    # 00:00:00 in the two-column form) means "not yet". A time from a "99" query also
    # marks the booking cancelled. E.g.
    #   "1": SELECT validasi FROM referensi_mobilejkn_bpjs WHERE nobooking = %(kodebooking)s
    #   "2": SELECT tgl_registrasi, jam_reg FROM reg_periksa WHERE no_rawat = %(no_rawat)s
    queries: dict[str, str] = Field(default_factory=dict)
    # true: only Mobile JKN bookings (referensi_mobilejkn_bpjs). false: also every
    # outpatient visit in reg_periksa without such a booking whose poli is mapped in
    # maping_poli_bpjs (on-site registrations; kodebooking = no_rawat).
    jkn_only: Flag = True
    # kd_pj (penjab) codes of BPJS patients: an on-site visit with one is "JKN".
    jkn_payers: list[str] = Field(default_factory=lambda: ["BPJ"])
    # antrean/add's jeniskunjungan for on-site visits (Khanza records it only for
    # Mobile JKN bookings): 1 Rujukan FKTP, 2 Rujukan Internal, 3 Kontrol, 4 Antar RS.
    onsite_jeniskunjungan: Annotated[Literal[1, 2, 3, 4], BeforeValidator(whole)] = 1
    # Earlier service dates polled again on every poll (1: yesterday's visits too, for
    # task times typed in after midnight). The day before a date change is always
    # polled once more, whatever this says.
    lookback_days: Annotated[Integer, Field(ge=0, le=7)] = 0
    # A cancellation the database has no time for (a visit cancelled at the counter:
    # reg_periksa.stts = 'Batal'): "observed" reports task 99 at the time the poller
    # first saw it, and says so in the visit's progress; "hold" waits for a time.
    cancel_time: CancelTime = "observed"
    connect_timeout: PositiveDuration = 10.0  # to reach the database
    read_timeout: PositiveDuration = 30.0  # for one query's answer

    @field_validator("queries", mode="before")
    @classmethod
    def _task_keys_as_text(cls, queries: object) -> object:
        # ``5: SELECT …`` in YAML has an integer key; it names task "5" all the same.
        if isinstance(queries, dict):
            return {str(k) if isinstance(k, int) else k: v for k, v in queries.items()}
        return queries

    @field_validator("queries")
    @classmethod
    def _check_queries(cls, queries: dict[str, str]) -> dict[str, str]:
        allowed = ("1", "2", "3", "4", "5", "6", "7", "99")
        params = ("no_rawat", "kodebooking", "tanggal")
        problems = []
        for key, sql in queries.items():
            if key not in allowed:
                problems.append(f"unknown task {key!r} (tasks: {', '.join(allowed)})")
                continue
            if not sql.strip():
                problems.append(f"task {key}: empty query")
            for spec in re.finditer(r"%(?:\(([^)]*)\))?(.?)", sql):
                name, conversion = spec.groups()
                if spec.group(0) == "%%" or (name in params and conversion == "s"):
                    continue
                problems.append(
                    f"task {key}: {spec.group(0)!r} is not a parameter (use %(no_rawat)s, "
                    "%(kodebooking)s or %(tanggal)s; write a literal % as %%)"
                )
                break
        if problems:
            raise ValueError("; ".join(problems))
        return queries
