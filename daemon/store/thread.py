"""Run store operations from asyncio on one dedicated database thread.

Synchronous peewee on a single thread per process, each unit of work one call
in one transaction, awaited from the event loop. A cancelled await does not
cancel the unit of work: it runs to its commit or rollback on the thread, so
an outcome is never half-written.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, Protocol, TypeVar

from daemon.store import Store

P = ParamSpec("P")
T = TypeVar("T")


class StoreRunner(Protocol):
    """Runs store operations for the event loop: on a thread (``StoreThread``) or
    in a worker process (``daemon.store.process.StoreProcess``)."""

    store: Store

    async def run(self, operation: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``operation(*args, **kwargs)``, one unit of work, run to its end
        even when the await is cancelled."""
        ...

    async def aclose(self) -> None: ...


class StoreThread:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outboxd-store")

    async def run(self, operation: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``operation(*args, **kwargs)`` run on the store thread."""
        loop = asyncio.get_running_loop()
        call = functools.partial(operation, *args, **kwargs)
        return await asyncio.shield(loop.run_in_executor(self._executor, call))

    async def aclose(self) -> None:
        """Close the thread's connection, then stop the thread."""
        await self.run(self.store.close)
        self._executor.shutdown(wait=True)
