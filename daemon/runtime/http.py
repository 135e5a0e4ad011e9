"""What every HTTP server of outboxd's shares (the control API, each role's
/healthz and /metrics): how long a connection may sit idle, and how aiohttp's own
errors are logged.

aiohttp answers a request it cannot parse (a header line over 8,190 bytes, a
malformed header, bytes that are not HTTP) with 400 and logs it at ERROR with the
parser's exception, whose text holds the offending line: an ``Authorization``
header, token and all, in the log, nine lines of traceback a request. Here such a
request is one WARNING line naming what was wrong and where it came from, never a
byte of what was sent, and at most ``PER_MINUTE`` of them a minute (the next line
after a quiet spell says how many were left out: ``daemon.runtime.refusals``).

An idle connection (no request under way: between requests, or while a request's
line and headers are still arriving) is closed after the idle timeout (aiohttp's
keep-alive timer, which runs from the moment a connection opens); a body has its
own deadline where a handler reads it (``daemon.api.params.read_body``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from aiohttp import http_exceptions

from daemon.runtime.refusals import PER_MINUTE, RefusalLog

LINGER = 5.0  # seconds a body nobody read is read on (and thrown away) before closing
_WHAT: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "a request line or header longer than the server reads"),
    (http_exceptions.BadHttpMethod, "not HTTP (TLS to a plain HTTP port?)"),
    (http_exceptions.InvalidHeader, "a malformed header"),
    (http_exceptions.InvalidURLError, "a malformed URL"),
    (http_exceptions.BadStatusLine, "a malformed request line"),
    (http_exceptions.PayloadEncodingError, "a body that is not as its headers say"),
    (http_exceptions.HttpProcessingError, "a malformed request"),
)


def what_was_wrong(exc: BaseException) -> str:
    """A malformed request's fault in words of our own (the exception's text
    quotes what was sent)."""
    for kind, words in _WHAT:
        if isinstance(exc, kind):
            return words
    return "a malformed request"


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """The logger aiohttp's request handler is given: its errors about requests
    it could not parse become one short line, rate-limited; the rest pass."""

    def __init__(
        self,
        logger: logging.Logger,
        per_minute: int = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.refusals = RefusalLog(logger, per_minute, clock)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, http_exceptions.HttpProcessingError):
            self.refused(exc, args[0] if args else None)
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs  # the caller's extra as it is (the adapter has none of its own)

    def refused(self, exc: BaseException, remote: object) -> None:
        """One line about a request refused as malformed, if this minute has room."""
        code = getattr(exc, "code", 400)
        self.refusals.refused(what_was_wrong(exc), code, type(exc).__name__, remote)


def runner_options(idle_timeout: float, logger_name: str) -> dict[str, Any]:
    """The keyword arguments of an ``aiohttp.web.AppRunner`` serving outboxd's HTTP."""
    return {
        "access_log": None,
        "keepalive_timeout": idle_timeout,
        "lingering_time": LINGER,
        "logger": ServerLog(logging.getLogger(logger_name)),
    }
