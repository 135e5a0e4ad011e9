"""Waiting on a condition instead of sleeping: ``eventually`` (until it holds),
``stays`` (it holds throughout a window, for "nothing more happens"), and
``wait_until`` for tests without an event loop.

A check is a plain function or a coroutine function. A plain one runs on a
thread (it may read the database, which blocks, while servers of the test run
on the event loop); what it returns when true is returned, and a timeout is an
``AssertionError`` naming what was waited for, with ``dump()`` (the processes'
logs, say) appended.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Check = Callable[[], Any]  # a function (its value looked at) or a coroutine function
INTERVAL = 0.05  # seconds between two looks


async def _ask(check: Check) -> Any:
    if inspect.iscoroutinefunction(check):
        return await check()
    result = await asyncio.to_thread(check)
    if inspect.isawaitable(result):  # a lambda returning a coroutine
        result = await result
    return result


def _message(what: str, timeout: float, dump: Callable[[], str] | None) -> str:
    text = f"timed out after {timeout:g}s waiting for {what}"
    return f"{text}\n{dump()}" if dump is not None else text


async def eventually(
    check: Check,
    what: str = "the condition",
    timeout: float = 30.0,
    dump: Callable[[], str] | None = None,
    interval: float = INTERVAL,
) -> Any:
    """Look until ``check()`` is true (returning its value), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await _ask(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(_message(what, timeout, dump))
        await asyncio.sleep(interval)


async def stays(
    check: Check,
    what: str,
    seconds: float,
    dump: Callable[[], str] | None = None,
    interval: float = INTERVAL,
) -> None:
    """``check()`` is true at every look for ``seconds``: fails at the first false one.
    For what must not happen (no second notification, no more attempts), where
    only time can tell."""
    deadline = time.monotonic() + seconds
    while True:
        if not await _ask(check):
            text = f"no longer true: {what}"
            raise AssertionError(f"{text}\n{dump()}" if dump is not None else text)
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], T],
    what: str = "the condition",
    timeout: float = 30.0,
    dump: Callable[[], str] | None = None,
    interval: float = INTERVAL,
) -> T:
    """``eventually`` for a test without an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(_message(what, timeout, dump))
        time.sleep(interval)
