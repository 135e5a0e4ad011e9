"""The figures the control role exports at scrape time: per channel, how many
messages wait (pending), are being sent and have failed, and the age of the
oldest pending one. Each is an index range read (``(channel, status, …)``), so a
scrape costs the same at a thousand rows as at millions; delivered messages,
which are most of the table, are not counted here (``stats`` counts them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import peewee as pw

from daemon.store.base import StoreBase
from daemon.store.models import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    Message,
    StatusEvent,
    read_timestamp,
)

QUEUE_STATUSES = (PENDING, SENDING, FAILED)


@dataclass(frozen=True)
class QueueGauges:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, status)
    oldest_pending: dict[str, float] = field(default_factory=dict)  # channel: age in seconds


class GaugeOps(StoreBase):
    def queue_gauges(self, channels: Sequence[str], now: datetime | None = None) -> QueueGauges:
        """For each of ``channels``: the count of each queue status and the oldest
        pending message's age (0 when none waits)."""

        def work() -> QueueGauges:
            when = self._now(now)
            counts: dict[tuple[str, str], int] = {}
            oldest: dict[str, float] = {}
            for channel in channels:
                for status in QUEUE_STATUSES:
                    counts[(channel, status)] = (
                        Message.select()
                        .where((Message.channel == channel) & (Message.status == status))
                        .count()
                    )
                first = (
                    Message.select(pw.fn.MIN(Message.created_at))
                    .where((Message.channel == channel) & (Message.status == PENDING))
                    .scalar()
                )
                oldest[channel] = (
                    0.0
                    if first is None
                    else max(0.0, (when - read_timestamp(first)).total_seconds())
                )
            return QueueGauges(counts, oldest)

        return self._read(work)


@dataclass(frozen=True)
class Minute:
    start: datetime
    sent: int
    failed: int


class MinuteOps(StoreBase):
    def per_minute(self, minutes: int = 60, now: datetime | None = None) -> list[Minute]:
        """Messages that reached ``sent`` and ``failed`` in each of the last
        ``minutes`` whole minutes (the current one included), oldest first; read
        from the status events of that span (their ``at`` index)."""
        when = self._now(now).replace(second=0, microsecond=0)
        since = when - timedelta(minutes=minutes - 1)

        def work() -> list[Minute]:
            bucket = (
                pw.fn.date_trunc("minute", StatusEvent.at)
                if self.postgres
                else pw.fn.substr(StatusEvent.at, 1, 16)
            )
            rows = (
                StatusEvent.select(bucket, StatusEvent.to_status, pw.fn.COUNT(StatusEvent.id))
                .where((StatusEvent.at >= since) & StatusEvent.to_status.in_((SENT, FAILED)))
                .group_by(pw.SQL("1"), pw.SQL("2"))  # by position: the minute's parameter
                .tuples()
            )
            counts: dict[tuple[datetime, str], int] = {}
            for start, status, count in rows:
                key = read_timestamp(start if not isinstance(start, str) else start + ":00")
                counts[(key.replace(second=0, microsecond=0), status)] = count
            out = []
            for i in range(minutes):
                start = since + timedelta(minutes=i)
                out.append(
                    Minute(start, counts.get((start, SENT), 0), counts.get((start, FAILED), 0))
                )
            return out

        return self._read(work)
