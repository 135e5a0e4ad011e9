"""Autovacuum's stand-in, for a PostgreSQL server that runs without it.

A production server vacuums the tables outboxd deletes from (autovacuum is on by
default, waking every minute). A test server may have it off for speed, and then the
dead rows of every purge stay and the schema grows whatever outboxd does: the soak
would measure the server's settings, not outboxd. There the soak vacuums its own
schema's tables every minute (``VACUUM (ANALYZE)``, what autovacuum would do), and
says so in its set-up lines."""

from __future__ import annotations

import threading

from lib.backends import PostgresBackend

EVERY = 60.0  # seconds: autovacuum_naptime's default


def autovacuum_on(backend: PostgresBackend) -> bool:
    conn = backend.connect_raw()
    try:
        return str(conn.execute("SHOW autovacuum").fetchone()[0]) == "on"
    finally:
        conn.close()


def vacuum_schema(backend: PostgresBackend) -> float:
    """``VACUUM (ANALYZE)`` each table of the schema; the seconds it took."""
    import time

    started = time.monotonic()
    conn = backend.connect_raw()
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (backend.schema,)
            ).fetchall()
        ]
        for table in tables:
            conn.execute(f'VACUUM (ANALYZE) "{backend.schema}"."{table}"')
    finally:
        conn.close()
    return time.monotonic() - started


class Vacuum:
    """A thread vacuuming the schema every ``EVERY`` seconds until ``stop()``."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.runs = 0
        self.seconds = 0.0
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-vacuum", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(300)

    def _loop(self) -> None:
        while not self._stop.wait(EVERY):
            try:
                self.seconds += vacuum_schema(self.backend)
                self.runs += 1
            except Exception as exc:  # reported; the soak goes on
                self.error = f"{type(exc).__name__}: {exc}"
