"""Time as every layer reads it: aware UTC; and as an operator reads it: in the
configured zone, labelled with it (``2026-11-23 10:42:13 WIB``)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def utcnow() -> datetime:
    return datetime.now(UTC)


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
