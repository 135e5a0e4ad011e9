"""aiohttp's log of requests it could not parse: one short line each, never a
byte of what was sent, at most a number a minute (from a table, time injected)."""

from __future__ import annotations

import logging

import pytest
from aiohttp import http_exceptions

from daemon.runtime.http import ServerLog, what_was_wrong

SECRET = "obx_the-token-itself"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (http_exceptions.LineTooLong(f"Authorization: Bearer {SECRET}", 8190), "longer than"),
        (http_exceptions.InvalidHeader(f"X: {SECRET}".encode()), "a malformed header"),
        (http_exceptions.BadHttpMethod(f"\x16\x03{SECRET}"), "not HTTP"),
        (http_exceptions.BadStatusLine(f"GET {SECRET}"), "a malformed request line"),
        (http_exceptions.InvalidURLError(f"/{SECRET}"), "a malformed URL"),
        (http_exceptions.ContentLengthError(SECRET), "not as its headers say"),
        (http_exceptions.BadHttpMessage(SECRET), "a malformed request"),
    ],
)
def test_a_malformed_request_is_one_line_without_what_was_sent(caplog, exc, words):
    log = ServerLog(logging.getLogger("test.server"))
    with caplog.at_level(logging.DEBUG, "test.server"):
        log.exception("Error handling request from %s", "10.1.2.3", exc_info=exc)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert words in record.getMessage() and words in what_was_wrong(exc)
    shown = record.getMessage() + repr(vars(record))
    assert SECRET not in shown and record.remote == "10.1.2.3"  # type: ignore[attr-defined]


def test_at_most_so_many_lines_a_minute_and_the_next_says_how_many_were_left_out(caplog):
    clock = Clock()
    log = ServerLog(logging.getLogger("test.server"), per_minute=3, clock=clock)
    bad = http_exceptions.LineTooLong(SECRET, 8190)
    with caplog.at_level(logging.INFO, "test.server"):
        for _ in range(10):
            log.exception("Error handling request from %s", "10.1.2.3", exc_info=bad)
            clock.now += 1
        assert len(caplog.records) == 3
        clock.now += 60
        log.exception("Error handling request from %s", "10.1.2.3", exc_info=bad)
    assert len(caplog.records) == 4
    assert caplog.records[-1].not_logged_before == 7  # type: ignore[attr-defined]


def test_other_records_pass_as_they_are(caplog):
    log = ServerLog(logging.getLogger("test.server"))
    with caplog.at_level(logging.DEBUG, "test.server"):
        log.debug("Ignored premature client disconnection")
        try:
            raise RuntimeError("a handler's own bug")
        except RuntimeError as exc:
            log.exception("Unhandled exception", exc_info=exc)
    assert [r.getMessage() for r in caplog.records] == [
        "Ignored premature client disconnection",
        "Unhandled exception",
    ]
    assert caplog.records[1].exc_info is not None
