"""The restore drill: a backup taken while a dispatcher delivers a stream of
messages, restored as docs/backup.md says (stop, set the broken database aside
with its -wal and -shm, copy the backup in, migrate, start), holds every row it
took, whole and consistent, and a dispatcher on it delivers what was left to do."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.sim.http import HttpSink
from daemon.store.db import open_database
from daemon.store.migrations import LATEST, migrate
from daemon.store.sync import Store
from tests.support.cli import outboxd
from tests.support.ports import free_port
from tests.support.processes import DaemonProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

CONFIG = """
database: sqlite:///o.db
channels:
  hook:
    kind: http
    url: http://127.0.0.1:{sink}/hook
    rate: 100/s
    lease: 3s
roles:
  dispatcher: {{base_port: {port}}}
control: {{port: {control}}}
"""


def read(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def by_status(path: Path) -> dict[str, int]:
    return dict(read(path, "SELECT status, COUNT(*) FROM outboxd_message GROUP BY status"))


def consistent(path: Path) -> None:
    """Every row whole: the tallies are the counts, each message's last event is its
    status and its first the enqueue, a lease exactly on what is being sent, a sent
    message with its time and answer, every event of a message that is there."""
    store = Store(open_database(DatabaseSettings(url=f"sqlite:///{path}"), create=False))
    try:
        counted = read(path, "SELECT channel, status, COUNT(*) FROM outboxd_message GROUP BY 1, 2")
        assert store.tally_counts() == {(c, s): n for c, s, n in counted}
    finally:
        store.close()
    assert read(path, "PRAGMA integrity_check") == [("ok",)]
    assert read(path, "PRAGMA foreign_key_check") == []
    torn = read(
        path,
        """SELECT m.id, m.status, last.to_status, first.from_status, first.to_status
        FROM outboxd_message m
        JOIN outboxd_status_event last ON last.id = (
            SELECT MAX(id) FROM outboxd_status_event WHERE message_id = m.id)
        JOIN outboxd_status_event first ON first.id = (
            SELECT MIN(id) FROM outboxd_status_event WHERE message_id = m.id)
        WHERE last.to_status <> m.status OR first.from_status IS NOT NULL
            OR first.to_status <> 'pending'
            OR (m.status = 'sending') <> (m.lease_owner IS NOT NULL)
            OR (m.status = 'sent' AND (m.sent_at IS NULL OR m.response IS NULL))""",
    )
    assert torn == []
    unevented = read(
        path,
        "SELECT COUNT(*) FROM outboxd_message m WHERE NOT EXISTS "
        "(SELECT 1 FROM outboxd_status_event e WHERE e.message_id = m.id)",
    )
    assert unevented == [(0,)]


async def test_a_backup_taken_while_delivering_restores_whole(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/o.db"
    live = Store(open_database(DatabaseSettings(url=url)))
    migrate(live.db)
    stop_stream = asyncio.Event()
    enqueued = 0

    async def stream() -> None:  # messages keep coming while the backup is taken
        nonlocal enqueued
        while not stop_stream.is_set():
            batch = [
                NewMessage("hook", f"m{enqueued + i}", b'{"n": %d}' % (enqueued + i), "json")
                for i in range(20)
            ]
            await asyncio.to_thread(live.enqueue_many, batch)
            enqueued += len(batch)
            await asyncio.sleep(0.02)  # pacing the producer, not a barrier

    async with HttpSink() as sink:
        port = free_port()
        config = tmp_path / "o.yaml"
        config.write_text(CONFIG.format(sink=sink.port, port=port, control=free_port()))
        dispatcher = DaemonProcess(tmp_path, config)
        producer = asyncio.create_task(stream())
        try:
            await dispatcher.start(port)
            await eventually(
                lambda: by_status(tmp_path / "o.db").get("sent", 0) >= 50,
                what="deliveries under way",
                dump=dispatcher.output,
            )
            result = await asyncio.to_thread(
                outboxd, "backup", "-c", "o.yaml", "backups/drill.db", cwd=tmp_path
            )
            assert result.returncode == 0, result.stderr.decode()
            held = sum(by_status(tmp_path / "backups" / "drill.db").values())
            await eventually(lambda: enqueued > held + 20, what="the stream going on after")
            stop_stream.set()
            await producer
            assert await dispatcher.stop() == 0
        finally:
            stop_stream.set()
            dispatcher.kill()
            await asyncio.gather(producer, return_exceptions=True)
            live.close()

        backup = tmp_path / "backups" / "drill.db"
        taken = by_status(backup)
        total = sum(taken.values())
        assert taken.get("sent", 0) >= 50
        assert taken.get("pending", 0) + taken.get("sending", 0) > 0, taken  # work was left
        assert total < enqueued  # the stream went on after the copy
        consistent(backup)
        # what the backup holds is what the database held: the same messages, unchanged
        rows = 'SELECT id, "key", payload, created_at FROM outboxd_message'
        old = {r[0]: r[1:] for r in read(tmp_path / "o.db", rows)}
        for id_, *rest in read(backup, rows):
            assert old[id_] == tuple(rest)
        sent = "SELECT \"key\" FROM outboxd_message WHERE status = 'sent'"
        sent_then = {r[0] for r in read(backup, sent)}
        assert sent_then <= {r.headers["Idempotency-Key"] for r in sink.requests}

        # the restore, as docs/backup.md has it
        (tmp_path / "broken").mkdir()
        for name in ("o.db", "o.db-wal", "o.db-shm"):
            if (tmp_path / name).exists():
                shutil.move(tmp_path / name, tmp_path / "broken" / name)
        shutil.copyfile(backup, tmp_path / "o.db")
        migrated = await asyncio.to_thread(outboxd, "migrate", "-c", "o.yaml", cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr.decode()
        assert f"schema is up to date (version {LATEST})" in migrated.stdout.decode()
        assert by_status(tmp_path / "o.db") == taken

        left = {
            r[0]
            for r in read(
                tmp_path / "o.db",
                "SELECT \"key\" FROM outboxd_message WHERE status IN ('pending', 'sending')",
            )
        }
        before = len(sink.requests)
        restored = DaemonProcess(tmp_path, config, num=0)
        restored.log = tmp_path / "restored.log"
        try:
            await restored.start(port)
            await eventually(
                lambda: by_status(tmp_path / "o.db") == {"sent": total},
                what=f"all {total} messages of the backup sent",
                timeout=60,
                dump=restored.output,
            )
            assert await restored.stop() == 0
        finally:
            restored.kill()
        again = {r.headers["Idempotency-Key"] for r in sink.requests[before:]}
        assert again == left  # what was left to do was done, and nothing else
        consistent(tmp_path / "o.db")
