"""Bulk operations: an operator action on more messages than the bound is done a
batch at a time (each batch its own transaction), with a pause after each batch
as long as the batch took, so that delivery goes on beside it (on SQLite one
writer at a time: back to back, a bulk retry cut delivery 13-fold). The control
role carries on those the API starts; ``outboxd retry …`` carries on its own;
both through ``paced_batch``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from daemon.domain.views import OperationView
from daemon.store.aio import AsyncStore

MIN_PAUSE = 0.01  # seconds after a batch, however quick it was


async def paced_batch(store: AsyncStore, operation: int) -> OperationView | None:
    """The next batch of a bulk operation, then (unless that was the last) a
    pause as long as it took; the operation as it stands (None: there is no such
    operation)."""
    started = time.monotonic()
    view = await store.advance_operation(operation)
    if view is not None and not view.finished:
        # as long again before the next batch: the database is the dispatchers'
        # too (on SQLite, one writer at a time)
        await asyncio.sleep(max(MIN_PAUSE, time.monotonic() - started))
    return view


async def carry_on(
    store: AsyncStore, operation: int, each: Callable[[OperationView], None] = lambda _: None
) -> OperationView | None:
    """A bulk operation to its end, batch by paced batch (``each`` is told of
    every batch); None when it is not there (removed under us)."""
    while True:
        view = await paced_batch(store, operation)
        if view is None:
            return None
        each(view)
        if view.finished:
            return view
