"""``kind: khanza``: a hospital's SIMRS Khanza database (MariaDB/MySQL, or a
Khanza-like SQLite file), its outpatient visits reported to BPJS Antrean.

A read covers the service dates of a window: today in the source's zone and
``lookback_days`` before it; when the cursor is older (the date changed since,
or the poller was down over midnight) the window starts at the cursor's date, at
most ``MAX_CATCHUP_DAYS`` back, so the end of a day is read once more. The
cursor is ``{"date": "YYYY-MM-DD", "polled_at": "…"}``: the last service date
fully read. The bookings read (``daemon.sources.khanza``) are planned into the
visit's BPJS steps (``daemon.bpjs.plan``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, SecretStr, field_validator

from daemon.bpjs.plan import Booking, CancelTime, Plan, plan_visits
from daemon.fields import Flag, Integer, PositiveDuration, whole
from daemon.sources.base import Batch, Reading, Source, SourceKind, SourceSettings

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


# --- the poll window ------------------------------------------------------------------


def poll_window(
    now: datetime, zone: ZoneInfo, lookback_days: int, cursor: str | None
) -> tuple[date, date]:
    """The service dates a poll at ``now`` covers: (first, last = today in ``zone``)."""
    today = now.astimezone(zone).date()
    first = today - timedelta(days=lookback_days)
    previous = cursor_date(cursor)
    if previous is not None and previous < first:
        first = max(previous, today - timedelta(days=MAX_CATCHUP_DAYS))
    return first, today


def cursor_date(cursor: str | None) -> date | None:
    """The date in a cursor value; None for none or one it cannot read."""
    if not cursor:
        return None
    try:
        return date.fromisoformat(json.loads(cursor)["date"])
    except (ValueError, TypeError, KeyError):
        return None


def cursor_value(last: date, now: datetime) -> str:
    return json.dumps({"date": last.isoformat(), "polled_at": now.astimezone(UTC).isoformat()})


def settled_steps(
    bookings: list[Booking],
    progress: Mapping[str, Mapping[str, Mapping[str, Any]]],
    plan: Plan,
) -> dict[str, frozenset[str]]:
    """Per visit, the steps queued or further along once ``plan`` is stored."""
    out: dict[str, frozenset[str]] = {}
    for booking in bookings:
        kb = booking.kodebooking
        merged = {**progress.get(kb, {}), **plan.progress.get(kb, {})}
        out[kb] = frozenset(
            step
            for step, entry in merged.items()
            if entry.get("status") not in ("held", "failed", "cancelled", "rejected")
        )
    return out


# --- the source -----------------------------------------------------------------------


class KhanzaBpjsSource:
    """Reads a Khanza database's bookings of the window and plans their BPJS steps.
    Steps already settled (queued or further) at the last plan spare their
    per-booking override queries at the next read."""

    def __init__(self, settings: KhanzaSettings, zone: ZoneInfo, reader: Any) -> None:
        self.settings = settings
        self.zone = zone
        self.reader = reader  # daemon.sources.khanza.KhanzaSource
        self.settled: dict[str, frozenset[str]] = {}

    def read(self, cursor: str | None, now: datetime, stop: threading.Event) -> Reading:
        first, last = poll_window(now, self.zone, self.settings.lookback_days, cursor)
        bookings = self.reader.read(first, last, dict(self.settled), stop)
        return Reading(
            records=bookings,
            items=[b.kodebooking for b in bookings],
            cursor=cursor_value(last, now),
            count=len(bookings),
        )

    def plan(
        self, reading: Reading, progress: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> Batch:
        bookings: list[Booking] = reading.records
        plan = plan_visits(
            bookings, progress, self.zone, self.settings.channel, now, self.settings.cancel_time
        )
        self.settled = settled_steps(bookings, progress, plan)
        return Batch(plan.messages, plan.progress, reading.cursor, plan.held)


def _build(name: str, settings: KhanzaSettings, zone: ZoneInfo) -> Source:
    from daemon.sources.khanza import KhanzaSource

    return KhanzaBpjsSource(settings, zone, KhanzaSource(name, settings, zone))


def _query(
    name: str, settings: KhanzaSettings, zone: ZoneInfo, sql: str, params: Mapping[str, Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    from daemon.sources.khanza import KhanzaSource

    return KhanzaSource(name, settings, zone).query(sql, params)


def _describe(settings: KhanzaSettings) -> str:
    from daemon.fields import redact_url

    return redact_url(settings.dsn.get_secret_value())


KIND = SourceKind(
    name="khanza",
    settings=KhanzaSettings,
    build=_build,
    channel_kinds=("bpjs_antrean",),
    describe=_describe,
    query=_query,
)
