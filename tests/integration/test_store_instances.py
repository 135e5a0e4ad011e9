"""Stores are instances: two stores on two databases in one process share no
model, connection or statement, whatever order their operations come in."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import Delivered, Failed, NewMessage
from daemon.domain.selection import MessageFilter
from daemon.resilience.ratelimit import Bucket
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.models import Message
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sqlite_store(tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path}/instances.db"
    db = open_database(DatabaseSettings(url=url))
    migrate(db)
    db.close()
    return Store(open_database(DatabaseSettings(url=url)))


def counts(store: Store, channel: str) -> dict[str, int]:
    return next((s.counts for s in store.stats(now=at(10)) if s.channel == channel), {})


def test_a_sqlite_store_and_a_postgres_store_in_one_process_keep_apart(tmp_path: Path, pg_url: str):
    channel = f"apart-{uuid.uuid4().hex[:8]}"  # the PostgreSQL schema is the session's
    lite = sqlite_store(tmp_path)
    pg = Store(open_database(DatabaseSettings(url=pg_url)))
    try:
        assert (lite.dialect, pg.dialect) == ("sqlite", "postgres")
        assert lite.models.Message is not pg.models.Message
        assert lite.models.Message._meta.database is lite.db
        assert pg.models.Message._meta.database is pg.db
        assert lite.models.StatusEvent.message.rel_model is lite.models.Message
        assert Message._meta.database is None  # the declarations stay unbound

        # interleaved: one key on both, and one more on PostgreSQL
        for i in range(3):
            key = f"k{i}"
            a = lite.enqueue(NewMessage(channel, key, b"lite"), now=at(0))
            b = pg.enqueue(NewMessage(channel, key, b"pg"), now=at(0))
            assert a.created and b.created
        assert pg.enqueue(NewMessage(channel, "pg-only", b"pg"), now=at(0)).created
        assert counts(lite, channel) == {"pending": 3}
        assert counts(pg, channel) == {"pending": 4}

        from_lite = lite.claim([channel], "lite", 10, 60, now=at(1))
        from_pg = pg.claim([channel], "pg", 10, 60, now=at(1))
        assert {bytes(m.payload) for m in from_lite} == {b"lite"} and len(from_lite) == 3
        assert {bytes(m.payload) for m in from_pg} == {b"pg"} and len(from_pg) == 4
        assert lite.renew_leases("lite", [m.id for m in from_lite], 60, now=at(2)) == sorted(
            m.id for m in from_lite
        )
        assert pg.take_tokens(channel, 2, Bucket(rate=1.0, capacity=5.0), now=at(2))[0] == 2
        assert (
            lite.take_tokens(channel, 2, Bucket(rate=1.0, capacity=5.0), now=at(2))[0] == 2
        )  # its own bucket

        lite.record("lite", [Delivered(m.id, "ok") for m in from_lite], now=at(3))
        pg.record("pg", [Failed(m.id, "refused") for m in from_pg], now=at(3))
        assert counts(lite, channel) == {"sent": 3}
        assert counts(pg, channel) == {"failed": 4}
        timeline = lite.message_timeline(from_lite[0].id)
        assert timeline is not None
        assert [e.to_status for e in timeline.events] == ["pending", "sending", "sent"]

        retried = pg.retry(MessageFilter(channel=channel, statuses=("failed",)), now=at(4))
        assert len(retried.changed) == 4
        assert counts(pg, channel) == {"pending": 4}
        assert counts(lite, channel) == {"sent": 3}
    finally:
        lite.close()
        pg.close()


def test_stores_used_from_threads_at_once_each_see_their_own(tmp_path: Path, pg_url: str):
    """Each on its own thread, as two roles' store threads would run: neither
    sees the other's messages however the calls interleave."""
    channel = f"threads-{uuid.uuid4().hex[:8]}"
    stores = {"sqlite": sqlite_store(tmp_path), "postgres": Store(open_database(
        DatabaseSettings(url=pg_url)))}  # fmt: skip
    go = threading.Barrier(len(stores))
    seen: dict[str, list[bytes]] = {}
    errors: list[BaseException] = []

    def work(name: str, store: Store) -> None:
        try:
            go.wait(timeout=10)
            for i in range(50):
                store.enqueue(NewMessage(channel, f"{name}-{i}", name.encode()), now=at(0))
            claimed = store.claim([channel], name, 100, 60, now=at(1))
            store.record(name, [Delivered(m.id) for m in claimed], now=at(2))
            seen[name] = sorted({bytes(m.payload) for m in claimed})
            assert len(claimed) == 50
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=item) for item in stores.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors, errors
        assert seen == {"sqlite": [b"sqlite"], "postgres": [b"postgres"]}
        assert counts(stores["sqlite"], channel) == {"sent": 50}
        assert counts(stores["postgres"], channel) == {"sent": 50}
    finally:
        for store in stores.values():
            store.close()
