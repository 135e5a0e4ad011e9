"""How many claimed messages a channel's loop keeps waiting when it claims more.

Enough to cover one claim at the channel's current pace: what its connections
start while the next claim runs (twice that, for safety), at most one batch.
A fast channel then claims whole batches and its connections never wait for a
claim; a slow one holds little beyond the batch it is sending, so several
dispatcher processes share its backlog instead of one hoarding it (the prefetch
problem of fixed-size worker queues). Pure: the clock is passed in.
"""

from __future__ import annotations

import math

RESERVE_FACTOR = 2.0  # cover twice the expected claim time
SMOOTHING = 0.3  # weight of the newest sample in the moving averages


def _average(current: float, sample: float) -> float:
    return sample if current == 0.0 else current + SMOOTHING * (sample - current)


class Prefetch:
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.rate = 0.0  # messages started per second, while busy
        self.claim_seconds = 0.0  # how long a claim takes
        self.reserve = 0  # messages to keep waiting when a claim starts
        self._mark: tuple[float, int] | None = None

    def claimed(self, now: float, started: int, claim_seconds: float) -> int:
        """Learn from a claim that just ended: ``started`` is the number of sends
        started so far (a running count), ``claim_seconds`` how long it took.
        Returns the new reserve."""
        if self._mark is not None:
            elapsed, count = now - self._mark[0], started - self._mark[1]
            if count > 0 and elapsed > 0:  # idle stretches teach nothing about pace
                self.rate = _average(self.rate, count / elapsed)
        self._mark = (now, started)
        self.claim_seconds = _average(self.claim_seconds, max(0.0, claim_seconds))
        wanted = math.ceil(RESERVE_FACTOR * self.rate * self.claim_seconds)
        self.reserve = min(self.batch_size, wanted)
        return self.reserve
