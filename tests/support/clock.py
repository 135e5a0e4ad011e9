"""A clock a test moves by hand, for the loops that take one (``Clock``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.domain.clock import Clock


class FakeClock(Clock):
    """Stands still until ``advance``; wall and monotonic time move together."""

    def __init__(self, start: datetime | None = None) -> None:
        self.wall = start or datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def for_store(self) -> datetime | None:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds
