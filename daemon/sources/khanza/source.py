"""The source as the poller sees it: the read window and cursor, then the plan of each
booking's BPJS steps (``daemon.bpjs.plan``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from daemon.bpjs.plan import Booking, Plan, plan_visits
from daemon.sources.base import Batch, Reading
from daemon.sources.khanza.settings import MAX_CATCHUP_DAYS, KhanzaSettings


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


class KhanzaBpjsSource:
    """Reads a Khanza database's bookings of the window and plans their BPJS steps.
    Steps already settled (queued or further) at the last plan spare their
    per-booking override queries at the next read."""

    def __init__(self, settings: KhanzaSettings, zone: ZoneInfo, reader: Any) -> None:
        self.settings = settings
        self.zone = zone
        self.reader = reader  # daemon.sources.khanza.reader.KhanzaSource
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
