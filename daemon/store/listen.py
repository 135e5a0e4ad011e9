"""Wake-ups for idle dispatchers: PostgreSQL LISTEN/NOTIFY.

The store sends ``NOTIFY outboxd, '<channel>'`` when it commits messages that
are due now; a listener wakes that channel's loop at once. SQLite's equivalent
is ``daemon.store.doorbell``. Roles reach this through the store
(``AsyncStore.notifies``, ``AsyncStore.listen``), never with SQL or connection
parameters of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from daemon.resilience.backoff import Backoff
from daemon.store.address import NOTIFY_CHANNEL  # not the SQL module: no peewee here

log = logging.getLogger("outboxd.doorbell")


async def listen(
    conninfo: dict[str, Any],
    ring: Callable[[str], None],
    listening: Callable[[bool], None] = lambda _: None,
) -> None:
    """Call ``ring(channel)`` for every notification, reconnecting forever;
    ``listening`` says when it listens and when it no longer does."""
    backoff = Backoff(0.5)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                log.info("listening for notifications")
                backoff.reset()
                listening(True)
                try:
                    async for note in conn.notifies():
                        ring(note.payload)
                finally:
                    listening(False)
        except (psycopg.Error, OSError) as exc:
            delay = backoff.next()
            log.warning(
                "notification listener lost; polling until it is back",
                extra={
                    "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    "retry_in": delay,
                },
            )
            await asyncio.sleep(delay)
