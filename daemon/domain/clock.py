"""Time as every layer reads it: aware UTC; and as an operator reads it: in the
configured zone, labelled with it (``2026-11-23 10:42:13 WIB``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """The time a role's loops read: the system's. A test hands a loop another
    (``tests/support/clock.py``) to move time on without waiting for it."""

    def now(self) -> datetime:
        """Wall time, aware UTC: what is stored and compared with stored times."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds that only go forward: intervals (a breaker's cool-down, a wait)."""
        return time.monotonic()

    def for_store(self) -> datetime | None:
        """The instant a store call is to use; None: the store reads the clock itself,
        once it holds the write lock (so waiting for the lock shortens no lease)."""
        return None


SYSTEM_CLOCK = Clock()


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def shown(value: datetime | None, zone: tzinfo, date: bool = True) -> str:
    """``value`` as an operator reads it: in ``zone``, to the second, with the zone's
    label (``2026-11-23 10:42:13 WIB``; ``10:42:13 WIB`` without the date); ``-``
    for None. Every time printed for a person goes through here."""
    if value is None:
        return "-"
    local = as_utc(value).astimezone(zone)
    label = local.strftime("%Z") or local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {label}" if date else f"{local:%H:%M:%S} {label}"
