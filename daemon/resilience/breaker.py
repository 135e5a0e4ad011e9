"""A circuit breaker per channel and process: it opens after N consecutive
transport failures, lets one probe through after a cool-down (half-open), and
closes on the probe's success. Time comes in as an argument."""

from __future__ import annotations

import enum


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(self, failures: int, cooldown: float) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self._probing = False

    def allow(self, now: float) -> bool:
        """May a send start now? In half-open, only one probe at a time."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.cooldown:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def cool(self, now: float) -> None:
        """Past the cool-down with nothing to send: half-open, so the next send is
        the probe. Without it a breaker whose channel has no more traffic would stay
        open (and its process unready) however long ago its partner came back."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.cooldown:
            self.state = BreakerState.HALF_OPEN

    def retry_in(self, now: float) -> float:
        """Seconds until a send may be allowed again (0 when it may now)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.opened_at + self.cooldown - now)
        return 0.0

    def success(self) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive = 0
        self._probing = False

    def failure(self, now: float) -> None:
        """A transport failure (the peer was not reached or did not answer)."""
        self.consecutive += 1
        if self.state is BreakerState.HALF_OPEN or self.consecutive >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = now
        self._probing = False
