"""``kind: khanza``: a hospital's SIMRS Khanza database (MariaDB/MySQL, or a
Khanza-like SQLite file), its outpatient visits reported to BPJS Antrean.

A read covers the service dates of a window: today in the source's zone and
``lookback_days`` before it; when the cursor is older (the date changed since,
or the poller was down over midnight) the window starts at the cursor's date, at
most ``MAX_CATCHUP_DAYS`` back, so the end of a day is read once more. The
cursor is ``{"date": "YYYY-MM-DD", "polled_at": "…"}``: the last service date
fully read. The bookings read (``daemon.sources.khanza.reader``) are planned into the
visit's BPJS steps (``daemon.bpjs.plan``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from daemon.sources.base import Source, SourceKind
from daemon.sources.khanza.settings import KhanzaSettings
from daemon.sources.khanza.source import KhanzaBpjsSource

# --- the poll window ------------------------------------------------------------------


# --- the source -----------------------------------------------------------------------


def _build(name: str, settings: KhanzaSettings, zone: ZoneInfo) -> Source:
    from daemon.sources.khanza.reader import KhanzaSource

    return KhanzaBpjsSource(settings, zone, KhanzaSource(name, settings, zone))


def _query(
    name: str, settings: KhanzaSettings, zone: ZoneInfo, sql: str, params: Mapping[str, Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    from daemon.sources.khanza.reader import KhanzaSource

    return KhanzaSource(name, settings, zone).query(sql, params)


def _describe(settings: KhanzaSettings) -> str:
    from daemon.domain.fields import redact_url

    return redact_url(settings.dsn.get_secret_value())


KIND = SourceKind(
    name="khanza",
    settings=KhanzaSettings,
    build=_build,
    channel_kinds=("bpjs_antrean",),
    describe=_describe,
    query=_query,
)
