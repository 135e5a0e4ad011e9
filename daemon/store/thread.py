"""Run store operations from asyncio on one dedicated database thread.

Synchronous peewee on a single thread per process, each unit of work one call
in one transaction, awaited from the event loop. A cancelled await does not
cancel the unit of work: it runs to its commit or rollback on the thread, so
an outcome is never half-written.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from daemon.domain.errors import StoreUnavailable
from daemon.store.sync import Store


class StoreThread:
    """A ``StoreRunner`` on a thread of this process (see ``daemon.store.aio``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outboxd-store")
        self._closed = False

    async def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Await the store operation ``name`` run on the store thread."""
        if self._closed:
            raise StoreUnavailable("the store thread is closed")
        operation = getattr(type(self._store), name, None)
        if not callable(operation) or name.startswith("_"):
            raise TypeError(f"{name!r} is not a store operation")
        loop = asyncio.get_running_loop()
        call = functools.partial(operation, self._store, *args, **kwargs)
        return await asyncio.shield(loop.run_in_executor(self._executor, call))

    async def aclose(self) -> None:
        """Close the thread's connection, then stop the thread."""
        if self._closed:
            return
        await self.call("close", (), {})
        self._closed = True
        self._executor.shutdown(wait=True)
