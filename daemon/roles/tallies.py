"""The tallies' housekeeping, a child of the dispatcher and of the control role: now
and then, sum what PostgreSQL's writers appended (``Store.fold_tallies``) and drop
the minutes older than the stats window reaches."""

from __future__ import annotations

import asyncio
import functools
import logging

from daemon.domain.errors import StoreUnavailable
from daemon.runtime.frame import ChildSpec, TaskChild
from daemon.store.aio import AsyncStore

log = logging.getLogger("outboxd.tallies")
POSTGRES_EVERY = 5.0  # seconds: every writing statement there adds a row or two
SQLITE_EVERY = 600.0  # SQLite keeps a row per key: only old minutes to drop


async def fold_tallies(store: AsyncStore, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await store.fold_tallies()
        except StoreUnavailable as exc:
            log.warning("tallies wait for the database", extra={"error": str(exc)})


def tallies_child(store: AsyncStore) -> ChildSpec:
    interval = POSTGRES_EVERY if store.postgres else SQLITE_EVERY
    return ChildSpec(
        "tallies",
        interval,
        lambda: TaskChild("tallies", functools.partial(fold_tallies, store, interval)),
    )
