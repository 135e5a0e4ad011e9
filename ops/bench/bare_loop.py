"""The reference the dispatcher's throughput is measured against: a bare loop doing
nothing but the work itself, on the same tables, peer and machine.

Claim a batch (one UPDATE ... RETURNING, oldest due first), send it over N MLLP
connections with one message in flight on each, mark the batch sent in one UPDATE,
repeat until nothing is pending. No status events, no leases beyond the owner column,
no checks of the payload or of the ACK beyond its end bytes, no retries, no metrics.

    python ops/bench/bare_loop.py --db sqlite:////tmp/x.db --port 2575 --channel bench
    python ops/bench/bare_loop.py --db postgresql://postgres@127.0.0.1/test --port 2575 ...

Prints one JSON line: {"sent": n, "first": t0, "last": t1} (``time.time()`` of the
first claim and of the last mark), so runs of several processes can be added up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from daemon.runtime.eventloop import add_argument, run
from daemon.store.models import db_timestamp

END = b"\x1c\r"


class Db:
    """The two statements, on SQLite (WAL, as the store opens it) or PostgreSQL."""

    def __init__(self, url: str, channel: str, owner: str) -> None:
        self.channel, self.owner = channel, owner
        self.postgres = url.startswith(("postgresql:", "postgres:"))
        if self.postgres:
            import psycopg

            self.conn: Any = psycopg.connect(url, autocommit=False)
            self.p = "%s"
        else:
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=wal")
            self.conn.execute("PRAGMA synchronous=normal")
            self.p = "?"

    def _begin(self) -> None:
        if not self.postgres:
            self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.conn.execute("COMMIT") if not self.postgres else self.conn.commit()

    def claim(self, limit: int) -> list[tuple[int, bytes]]:
        p = self.p
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        now = db_timestamp(datetime.now(UTC))
        sql = (
            f"WITH due AS MATERIALIZED (SELECT id FROM outboxd_message WHERE channel = {p}"
            f" AND status = 'pending' ORDER BY next_attempt_at, id LIMIT {p}{lock})"
            f" UPDATE outboxd_message SET status = 'sending', lease_owner = {p},"
            f" updated_at = {p} FROM due WHERE outboxd_message.id = due.id"
            " RETURNING outboxd_message.id, outboxd_message.payload"
        )
        self._begin()
        rows = self.conn.execute(sql, (self.channel, limit, self.owner, now)).fetchall()
        self._commit()
        return [(r[0], bytes(r[1])) for r in rows]

    def mark_sent(self, ids: Sequence[int]) -> None:
        p = self.p
        now = db_timestamp(datetime.now(UTC))
        marks = ", ".join([p] * len(ids))
        sql = (
            f"UPDATE outboxd_message SET status = 'sent', attempts = attempts + 1,"
            f" sent_at = {p}, updated_at = {p}, lease_owner = NULL WHERE id IN ({marks})"
        )
        self._begin()
        self.conn.execute(sql, (now, now, *ids))
        self._commit()


async def send_all(
    connections: Sequence[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    batch: list[tuple[int, bytes]],
) -> None:
    todo: Iterator[tuple[int, bytes]] = iter(batch)

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _, payload in todo:
            writer.write(b"\x0b" + payload + END)
            await reader.readuntil(END)

    await asyncio.gather(*(worker(r, w) for r, w in connections))


async def main(args: argparse.Namespace) -> dict[str, float]:
    db = Db(args.db, args.channel, f"bare-{os.getpid()}")
    connections = [
        await asyncio.open_connection("127.0.0.1", args.port) for _ in range(args.concurrency)
    ]
    sent, first = 0, 0.0
    while True:  # the database calls block the loop: nothing else is running
        started = time.time()
        batch = db.claim(args.batch)
        if not batch:
            break
        first = first or started
        await send_all(connections, batch)
        db.mark_sent([i for i, _ in batch])
        sent += len(batch)
    last = time.time()
    for _, writer in connections:
        writer.close()
    return {"sent": sent, "first": first, "last": last}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://...")
    parser.add_argument("--port", type=int, required=True, help="the MLLP peer on 127.0.0.1")
    parser.add_argument("--channel", default="bench")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    add_argument(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    print(json.dumps(run(main(arguments), arguments.event_loop)))
