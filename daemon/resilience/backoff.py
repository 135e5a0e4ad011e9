"""Retry policy: exponential backoff with full jitter, a cap, and limits on
attempts and on age. Pure: time and randomness come in as arguments."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from daemon.domain.units import format_duration

_MAX_EXPONENT = 62
RECONNECT_CAP = 30.0  # the longest wait between tries of something that keeps failing


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The upper bound of the wait after the ``attempt``-th failure (1-based)."""
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    return min(cap, base * (2.0**exponent))


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Full jitter: a wait drawn uniformly from ``[0, backoff_ceiling]``."""
    return backoff_ceiling(attempt, base, cap) * rand()


class Backoff:
    """Waits that double from ``base`` up to ``cap`` while something keeps failing
    (a database, a listener, a source); ``reset`` once it works again."""

    def __init__(self, base: float, cap: float = RECONNECT_CAP) -> None:
        self.base = base
        self.cap = max(cap, base)
        self.failures = 0

    def next(self) -> float:
        """The wait after one more failure."""
        self.failures += 1
        return backoff_ceiling(self.failures, self.base, self.cap)

    def reset(self) -> None:
        self.failures = 0


class _RetrySettings(Protocol):
    max_attempts: int
    backoff: float
    max_backoff: float
    max_age: float


@dataclass(frozen=True)
class RetryDecision:
    """``retry_at`` is when to try again, or None to give up (``reason`` says why)."""

    retry_at: datetime | None
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    backoff: float = 30.0
    max_backoff: float = 3600.0
    max_age: float = 86400.0

    @classmethod
    def from_settings(cls, settings: _RetrySettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            backoff=settings.backoff,
            max_backoff=settings.max_backoff,
            max_age=settings.max_age,
        )

    def decide(
        self,
        attempts: int,
        created_at: datetime,
        now: datetime,
        requested_delay: float | None = None,
        rand: Callable[[], float] = random.random,
        counted: bool = True,
    ) -> RetryDecision:
        """After the ``attempts``-th failed attempt: when to retry, or give up.

        A delay the peer asked for (``Retry-After``) is used as given instead of
        the backoff. A retry never goes past ``created_at + max_age``: the last
        one is placed at that deadline, and a failure after it gives up. An
        attempt that is not ``counted`` (the peer waits for an earlier message
        first) is bounded by ``max_age`` only.
        """
        if counted and attempts >= self.max_attempts:
            return RetryDecision(None, f"gave up after {attempts} attempt(s)")
        deadline = created_at + timedelta(seconds=self.max_age)
        if now >= deadline:
            return RetryDecision(
                None, f"gave up: older than max_age {format_duration(self.max_age)}"
            )
        if requested_delay is not None:
            delay = min(max(0.0, requested_delay), self.max_age)  # the deadline caps it anyway
            why = f"peer asked to wait {format_duration(delay)}"
        else:
            delay = backoff_delay(attempts, self.backoff, self.max_backoff, rand)
            why = f"backoff {format_duration(delay)} after attempt {attempts}"
        left = (deadline - now).total_seconds()
        retry_at = deadline if delay >= left else now + timedelta(seconds=delay)
        return RetryDecision(retry_at, why)
