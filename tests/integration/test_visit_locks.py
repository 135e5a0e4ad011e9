"""On PostgreSQL the poller locks a batch's visits in id order, as a dispatcher
recording BPJS answers does: two transactions taking the same rows in different
orders deadlock (the soak saw it: docs/soak.md)."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from daemon.config.database import DatabaseSettings
from daemon.store.db import open_database
from daemon.store.sync import Store
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

ENTRY = {"status": "queued"}


async def test_the_poller_locks_visits_in_the_dispatchers_order(pg_url):
    store = Store(open_database(DatabaseSettings(url=pg_url)))
    poller = Store(open_database(DatabaseSettings(url=pg_url)))
    try:
        # "KB-B" first, so it has the lower id: kodebooking order is not id order
        store.sync_visits("deadlock", {"KB-B": {"add": ENTRY}}, [])
        store.sync_visits("deadlock", {"KB-A": {"add": ENTRY}}, [])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            ids = dict(
                conn.execute(
                    "SELECT kodebooking, id FROM outboxd_visit WHERE source = 'deadlock'"
                ).fetchall()
            )
        low, high = ids["KB-B"], ids["KB-A"]
        assert low < high
        errors: list[BaseException] = []
        with psycopg.connect(pg_url) as dispatcher:  # a transaction, as the recorder's
            lock = "SELECT id FROM outboxd_visit WHERE id = %s FOR UPDATE"
            dispatcher.execute(lock, (low,))  # the lower id first, as locked_progress does

            def poll() -> None:
                try:
                    progress = {"KB-A": {"3": ENTRY}, "KB-B": {"3": ENTRY}}
                    poller.sync_visits("deadlock", progress, [])
                except BaseException as exc:
                    errors.append(exc)

            polling = threading.Thread(target=poll)
            polling.start()

            def poller_waits() -> bool:
                with psycopg.connect(pg_url, autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                        " WHERE NOT l.granted AND a.datname = current_database()"
                        " AND a.pid <> pg_backend_pid()"
                    ).fetchone()
                    return bool(row and row[0] > 0)

            await eventually(poller_waits, what="the poller waiting for the first lock")
            # with the poller holding "KB-A" (kodebooking order) this would deadlock
            dispatcher.execute(lock, (high,))
            dispatcher.commit()
        await asyncio.to_thread(polling.join, 30)
        assert not errors, errors
    finally:
        store.close()
        poller.close()
