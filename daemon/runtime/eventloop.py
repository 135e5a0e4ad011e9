"""Which asyncio event loop a process runs on: uvloop (libuv, less CPU per
message) where it is installed, else the standard library's."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from daemon.domain.fields import EVENT_LOOPS, EventLoopName

T = TypeVar("T")

log = logging.getLogger("outboxd.eventloop")


def loop_factory(name: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop called ``name``; the standard one, with a warning, when
    uvloop is asked for and not installed."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; using the standard asyncio event loop")
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], name: EventLoopName = "uvloop") -> T:
    """``asyncio.run(main)`` on the event loop called ``name``."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--event-loop uvloop|asyncio`` (default uvloop), as the simulators take it."""
    parser.add_argument(
        "--event-loop", choices=EVENT_LOOPS, default="uvloop", help="default: uvloop"
    )
