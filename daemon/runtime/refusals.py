"""The log of requests an HTTP server refused as malformed: one WARNING line each,
naming what was wrong in words of our own and where the request came from, never
a byte of what was sent (a request line or header can hold a token), and at most
``PER_MINUTE`` lines a minute (the next line after a quiet spell says how many were
left out). Shared by aiohttp's servers (``daemon.runtime.http.ServerLog``) and the
frame's own (``daemon.runtime.plainhttp``); imports no web framework."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

PER_MINUTE = 10  # lines a minute about malformed requests, at most
WINDOW = 60.0  # seconds


class RefusalLog:
    def __init__(
        self,
        logger: logging.Logger,
        per_minute: int = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.per_minute = per_minute
        self.clock = clock
        self.window_start = -WINDOW
        self.logged = 0
        self.left_out = 0

    def refused(self, what: str, status: int, error: str, remote: object) -> None:
        """One line about a request refused as malformed (``what`` was wrong with
        it, answered ``status``; ``error`` the name of the fault), if this minute
        has room."""
        now = self.clock()
        if now - self.window_start >= WINDOW:
            self.window_start, self.logged = now, 0
        if self.logged >= self.per_minute:
            self.left_out += 1
            return
        self.logged += 1
        extra: dict[str, Any] = {
            "status": status,
            "error": error,
            "remote": str(remote)[:64] if remote is not None else "?",
        }
        if self.left_out:
            extra["not_logged_before"] = self.left_out
            self.left_out = 0
        self.logger.warning("refused a malformed request: %s", what, extra=extra)
