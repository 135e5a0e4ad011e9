"""The databases a benchmark runs on: a SQLite file, or a PostgreSQL schema of the
bench's own; emptied and migrated before each measurement, dropped afterwards."""

from __future__ import annotations

import asyncio
import functools
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from daemon.config.database import DatabaseSettings
from daemon.domain.fields import redact_url
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.sql.base import NOTIFY_CHANNEL
from daemon.store.sync import Store
from lib.report import first_line, log

P = ParamSpec("P")
T = TypeVar("T")
CHANNEL = "bench"  # the outbox channel the benchmarks fill
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
NAMES = ("sqlite", "postgres")


def utcnow() -> datetime:
    return datetime.now(UTC)


def with_query(url: str, **params: str) -> str:
    """``url`` with these query parameters (replacing any of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class Connection(Protocol):
    """What the bench needs of a DB-API connection (sqlite3 and psycopg both have it)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def close(self) -> None: ...


class Backend:
    """One database: how to empty it, how to reach it raw, and its SQL dialect bits."""

    name: str
    url: str  # the store's URL: the bench's store and the dispatchers it starts
    bench_url: str  # the bench's own store, apart from the dispatchers' connections
    param: str  # DB-API placeholder
    begin: str  # starts a write transaction
    lock: str  # appended to a raw claim's sub-select
    series: str  # FROM clause yielding n from param 1 to param 2

    def reset(self) -> None:
        """An empty database with the current schema."""
        self.drop()
        self.create()
        db = open_database(DatabaseSettings(url=self.url))
        try:
            migrate(db)
        finally:
            db.close()

    def drop(self) -> None:
        raise NotImplementedError

    def create(self) -> None:
        raise NotImplementedError

    def connect_raw(self) -> Connection:
        """A connection in autocommit mode: transactions are begun explicitly."""
        raise NotImplementedError

    def timestamp(self, value: datetime) -> Any:
        """A UTC instant as the store writes it in this database."""
        raise NotImplementedError

    def settle(self, vacuum: bool = True) -> None:
        """After a bulk load: what the server would soon do by itself (on PostgreSQL
        ``VACUUM ANALYZE``, or ``ANALYZE`` alone without ``vacuum``)."""

    def wake(self) -> None:
        """Tell idle dispatchers that work is due (what a NOTIFY would)."""

    def server_pids(self) -> list[int]:
        """Database server processes serving the dispatchers (for CPU accounting)."""
        return []

    def version(self) -> str:
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"
    param = "?"
    begin = "BEGIN IMMEDIATE"
    lock = ""
    series = (
        "(WITH RECURSIVE s(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM s WHERE n < ?) "
        "SELECT n FROM s) AS s"
    )

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.url = self.bench_url = f"sqlite:///{self.path}"

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def connect_raw(self) -> Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        # the store's per-connection pragmas (journal_mode=wal persists in the file)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def timestamp(self, value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def version(self) -> str:
        return sqlite3.sqlite_version


class PostgresBackend(Backend):
    """A schema of the bench's own in the database at ``admin_url``."""

    name = "postgres"
    param = "%s"
    begin = "BEGIN"
    lock = " FOR UPDATE SKIP LOCKED"
    series = "generate_series(%s::bigint, %s::bigint) AS s(n)"

    def __init__(self, admin_url: str, schema: str) -> None:
        self.admin_url = admin_url
        self.schema = schema
        self.url = with_query(admin_url, options=f"-csearch_path={schema}")
        self.bench_url = with_query(self.url, application_name="outboxd-bench")
        self._version = self._admin("SHOW server_version")[0]

    def _admin(self, sql: str, url: str | None = None) -> Any:
        with psycopg.connect(url or self.admin_url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchone() if cursor.description else None

    def drop(self) -> None:
        self._admin(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def create(self) -> None:
        self._admin(f"CREATE SCHEMA {self.schema}")

    def connect_raw(self) -> Connection:
        return psycopg.connect(self.url, autocommit=True)

    def timestamp(self, value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None)

    def settle(self, vacuum: bool = True) -> None:
        self._admin(f"{'VACUUM ' if vacuum else ''}ANALYZE outboxd_message", self.url)

    def wake(self) -> None:
        self._admin(f"NOTIFY {NOTIFY_CHANNEL}, '{CHANNEL}'")

    def server_pids(self) -> list[int]:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'outboxd'"
            ).fetchall()
        return [row[0] for row in rows]

    def version(self) -> str:
        return self._version


def open_backends(
    names: Sequence[str], sqlite_path: Path, pg_url: str, pg_schema: str
) -> tuple[list[Backend], str | None]:
    """The backends to run, and why PostgreSQL was skipped (None when it was not)."""
    backends: list[Backend] = []
    if "sqlite" in names:
        backends.append(SqliteBackend(sqlite_path))
    if "postgres" in names:
        try:
            backends.append(PostgresBackend(pg_url, pg_schema))
        except psycopg.Error as exc:
            skipped = f"{redact_url(pg_url)} did not answer: {first_line(exc)}"
            log(f"postgres: skipped: {skipped}")
            return backends, skipped
    return backends, None


def locations(backends: Sequence[Backend]) -> dict[str, str]:
    """Where each backend's database is, for the set-up lines (no passwords)."""
    return {b.name + " at": redact_url(b.url) for b in backends}


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory (the SQLite file, the processes' logs), removed at the end."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class StoreOnThread:
    """A ``Store`` for a bench on an event loop: its work runs on one thread of its own
    (so on one connection), awaited."""

    def __init__(self, url: str) -> None:
        self.store = Store(open_database(DatabaseSettings(url=url)))
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-store")

    async def call(
        self, operation: Callable[Concatenate[Store, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``operation(store, *args, **kwargs)`` on the store's thread."""
        work = functools.partial(operation, self.store, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def close(self) -> None:
        """Close the thread's connection, then end the thread."""
        try:
            await self.call(Store.close)
        finally:
            self._thread.shutdown(wait=True)
