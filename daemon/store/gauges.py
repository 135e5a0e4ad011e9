"""The figures the control role exports at scrape time: per channel, how many
messages wait (pending), are being sent and have failed, and the age of the
oldest pending one; and the sent and failed of each recent minute. The counts are
the tallies' (``daemon.store.tallies``), the age the first entry of an index, so a
scrape costs the same at a thousand rows as at millions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from daemon.domain.statuses import FAILED, PENDING, SENDING, SENT
from daemon.store.tallies import Tallies, minute_of
from daemon.store.unit import Unit

QUEUE_STATUSES = (PENDING, SENDING, FAILED)


@dataclass(frozen=True)
class QueueGauges:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, status)
    oldest_pending: dict[str, float] = field(default_factory=dict)  # channel: age in seconds


@dataclass(frozen=True)
class Minute:
    start: datetime
    sent: int
    failed: int


class Gauges:
    """The figures of a scrape, read from the tallies."""

    def __init__(self, unit: Unit, tallies: Tallies) -> None:
        self.unit = unit
        self.tallies = tallies

    def queue_gauges(self, channels: Sequence[str], now: datetime | None = None) -> QueueGauges:
        """For each of ``channels``: the count of each queue status and the oldest
        pending message's age (0 when none waits)."""

        def work() -> QueueGauges:
            when = self.unit.now(now)
            tallied = self.tallies.counts()
            counts = {
                (channel, status): tallied.get((channel, status), 0)
                for channel in channels
                for status in QUEUE_STATUSES
            }
            oldest = {
                channel: (self.tallies.oldest_pending_age(channel, when) or 0.0)
                if counts[(channel, PENDING)]
                else 0.0
                for channel in channels
            }
            return QueueGauges(counts, oldest)

        return self.unit.read(work)

    def per_minute(self, minutes: int = 60, now: datetime | None = None) -> list[Minute]:
        """Messages that became ``sent`` and ``failed`` in each of the last
        ``minutes`` whole minutes (the current one included), all channels, oldest
        first; read from the minute tallies."""
        since = minute_of(self.unit.now(now)) - timedelta(minutes=minutes - 1)

        def work() -> list[Minute]:
            counts: dict[tuple[datetime, str], int] = {}
            for (_channel, start, status), n in self.tallies.minutes(since).items():
                counts[(start, status)] = counts.get((start, status), 0) + n
            out = []
            for i in range(minutes):
                start = since + timedelta(minutes=i)
                out.append(
                    Minute(start, counts.get((start, SENT), 0), counts.get((start, FAILED), 0))
                )
            return out

        return self.unit.read(work)
