"""Token bucket arithmetic, pure: the store keeps each channel's bucket in the
database and applies this under a row lock, so the limit holds for the channel
as a whole however many processes deliver."""

from __future__ import annotations

import math
from dataclasses import dataclass

from daemon.domain.units import Rate


@dataclass(frozen=True)
class Bucket:
    rate: float  # tokens per second
    capacity: float  # the most tokens that can be saved up: the burst

    @classmethod
    def for_rate(cls, rate: Rate, burst: int | None = None) -> Bucket:
        """Burst defaults to a tenth of a second's worth, at least one token:
        smooth, yet tolerant of a waiting process waking a little late."""
        per_second = rate.per_second
        return cls(per_second, float(burst if burst else max(1, math.ceil(per_second / 10))))

    def refill(self, tokens: float, elapsed: float) -> float:
        """Tokens after ``elapsed`` seconds (a clock going backwards adds none)."""
        return min(self.capacity, tokens + max(0.0, elapsed) * self.rate)

    def take(self, tokens: float, wanted: int) -> tuple[int, float, float]:
        """Grant up to ``wanted`` whole tokens: (granted, tokens left, seconds
        until the next token when none could be granted, else 0)."""
        granted = min(wanted, int(tokens + 1e-9))
        left = tokens - granted
        wait = 0.0 if granted else (1.0 - left) / self.rate
        return granted, left, wait
