"""The counts the triggers of schema v5 keep (see ``migrations``): how many messages
each (channel, status) has, and how many became sent or failed in each minute. A read
sums a few rows, whatever the size of the outbox. On PostgreSQL every writing
statement appends its net change as rows of its own; ``fold_tallies`` sums them into
one row per key now and then (the dispatcher's and the control role's housekeeping),
so that what a read sums stays small."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import peewee as pw

from daemon.domain.statuses import FAILED, PENDING, SENT
from daemon.domain.views import ChannelStats
from daemon.store.models import db_timestamp, read_timestamp, tuples
from daemon.store.sql.base import literal
from daemon.store.unit import Unit

FOLD_AT = 200  # rows beyond which a fold is worth its statement
MINUTES_KEPT = timedelta(days=8)  # the stats window goes back a week at most
RECENT = timedelta(hours=2)  # the minutes a fold sums up


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


class Tallies:
    """The counts, and what reads them: ``stats``."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.sql = unit.sql
        self.m = unit.models

    def counts(self) -> dict[tuple[str, str], int]:
        """(channel, status): how many messages; no key for none. Inside a unit of work."""
        Tally = self.m.Tally
        rows = Tally.select(Tally.channel, Tally.status, pw.fn.SUM(Tally.n)).group_by(
            Tally.channel, Tally.status
        )
        return {(channel, status): int(n) for channel, status, n in tuples(rows) if n}

    def minutes(self, since: datetime) -> dict[tuple[str, datetime, str], int]:
        """(channel, minute, status): how many became sent or failed in each minute
        from the one holding ``since`` on. Inside a unit of work."""
        t = self.m.MinuteTally
        rows = (
            t.select(t.channel, t.minute, t.status, pw.fn.SUM(t.n))
            .where(t.minute >= minute_of(since))
            .group_by(t.channel, t.minute, t.status)
        )
        return {
            (channel, read_timestamp(minute), status): int(n)
            for channel, minute, status, n in tuples(rows)
            if n
        }

    def tally_counts(self) -> dict[tuple[str, str], int]:
        """How many messages each (channel, status) has (none: no key)."""
        return self.unit.read(self.counts)

    def fold_tallies(self, now: datetime | None = None, at_least: int = FOLD_AT) -> int:
        """Sum the tallies' rows into one per key (PostgreSQL, where every change adds
        rows; SQLite keeps one per key already) once there are more than ``at_least``,
        and drop the minutes older than the stats window can ask for. One caller at a
        time: another finding the lock taken skips. Returns the rows removed."""
        when = self.unit.now(now)
        old, recent = db_timestamp(when - MINUTES_KEPT), db_timestamp(minute_of(when - RECENT))
        return self.unit.write(lambda: self.sql.fold_tallies(old, recent, at_least))

    def stats(self, now: datetime | None = None, window: float = 3600.0) -> list[ChannelStats]:
        """Per channel: counts by status, how many are due, the age of the oldest
        pending message, and how many reached sent / failed in the last ``window``
        seconds, counted in whole minutes: the current one and those before it, as
        many as the window has minutes (rounded up)."""
        when = self.unit.now(now)
        since = minute_of(when) - timedelta(minutes=max(1, math.ceil(window / 60)) - 1)

        def work() -> list[ChannelStats]:
            counts: dict[str, dict[str, int]] = {}
            for (channel, status), n in self.counts().items():
                counts.setdefault(channel, {})[status] = n
            finished: dict[tuple[str, str], int] = {}
            for (channel, _minute, status), n in self.minutes(since).items():
                finished[(channel, status)] = finished.get((channel, status), 0) + n
                counts.setdefault(channel, {})
            return [
                self._channel_stats(channel, by_status, finished, when)
                for channel, by_status in sorted(counts.items())
            ]

        return self.unit.read(work)

    def _channel_stats(
        self,
        channel: str,
        by_status: dict[str, int],
        finished: dict[tuple[str, str], int],
        now: datetime,
    ) -> ChannelStats:
        oldest = self._oldest_pending(channel) if by_status.get(PENDING) else None
        return ChannelStats(
            channel=channel,
            counts=dict(sorted(by_status.items())),
            due=self._due(channel, now, by_status.get(PENDING, 0)),
            oldest_pending_age=None if oldest is None else _age(oldest, now),
            sent_in_window=finished.get((channel, SENT), 0),
            failed_in_window=finished.get((channel, FAILED), 0),
            oldest_pending_at=oldest,
        )

    def _due(self, channel: str, now: datetime, pending: int) -> int:
        """The pending less those waiting for a later time (a retry's backoff, a
        ``not_before``): usually few, read from the due index's far end."""
        if not pending:
            return 0
        Message = self.m.Message
        later = (
            Message.select()
            .where(
                (Message.channel == channel)
                & (Message.status == literal(PENDING))
                & (Message.next_attempt_at > now)
            )
            .count()
        )
        return max(0, pending - later)

    def _oldest_pending(self, channel: str) -> datetime | None:
        # the first entry of the (channel, status, created_at, id) index: one row read,
        # where MIN(id) read every pending message of the channel
        Message = self.m.Message
        row = (
            Message.select(Message.created_at)
            .where((Message.channel == channel) & (Message.status == PENDING))
            .order_by(Message.created_at, Message.id)
            .first()
        )
        return None if row is None else row.created_at

    def oldest_pending_age(self, channel: str, now: datetime) -> float | None:
        oldest = self._oldest_pending(channel)
        return None if oldest is None else _age(oldest, now)


def _age(since: datetime, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds())
