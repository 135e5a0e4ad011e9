"""The database from a URL: SQLite (WAL) for one machine, PostgreSQL for several."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import peewee as pw

from daemon.domain.errors import DatabaseFileError, StoreError, StoreUnavailable
from daemon.domain.files import create_private
from daemon.store.address import POSTGRES_SCHEMES, Address, postgres_params, sqlite_path

if TYPE_CHECKING:
    from daemon.config.database import DatabaseSettings


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def database_name(db: pw.Database) -> str:
    """The database as an operator names it: the SQLite file, or host:port/name."""
    if is_postgres(db):
        params = db.connect_params
        return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{db.database}"
    return str(db.database)


@contextmanager
def unavailable_on_error(db: pw.Database | None = None) -> Iterator[None]:
    """Turn a driver's connection-level error into ``StoreUnavailable``, and a
    database that is not one (``file is not a database``, ``malformed``) into
    ``DatabaseFileError``; the messages name ``db``."""
    try:
        yield
    except (pw.OperationalError, pw.InterfaceError) as exc:
        where = f" ({database_name(db)})" if db is not None and not is_postgres(db) else ""
        raise StoreUnavailable(f"database unavailable{where}: {_one_line(exc)}") from exc
    except pw.DatabaseError as exc:
        if type(exc) is not pw.DatabaseError:  # integrity, data, programming: not the file
            raise
        where = database_name(db) if db is not None else "the database"
        raise DatabaseFileError(f"{where} is damaged or not a database: {_one_line(exc)}") from exc


def is_postgres(db: pw.Database) -> bool:
    return isinstance(db, pw.PostgresqlDatabase)


def open_database(settings: DatabaseSettings | Address, create: bool = True) -> pw.Database:
    """A peewee database for the URL; connections open lazily, one per thread.
    A SQLite file is checked first (``DatabaseFileError`` naming what is wrong);
    with ``create`` a missing file and its directories are made, else a missing
    file is an error (a command that only reads never creates anything)."""
    address = Address.of(settings)
    parts = urlsplit(address.url)
    if parts.scheme == "sqlite":
        return _sqlite(address, create)
    if parts.scheme in POSTGRES_SCHEMES:
        return _postgres(address)
    raise StoreError(f"unsupported database scheme {parts.scheme!r}")


class _SqliteDatabase(pw.SqliteDatabase):
    """SQLite whose connection set-up waits out a lock: switching a new file to
    WAL takes a lock SQLite's busy handler does not wait for, so processes
    opening a fresh database at once could fail with "database is locked"."""

    lock_wait = 1.0  # seconds to wait out that lock (the busy timeout, 1 s at least)

    def _set_pragmas(self, conn: sqlite3.Connection) -> None:  # peewee's hook, not in its stubs
        deadline = time.monotonic() + self.lock_wait
        delay = 0.005
        while True:
            try:
                pw.SqliteDatabase._set_pragmas(self, conn)  # type: ignore[attr-defined]
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is cut back to after a checkpoint


def check_sqlite_file(path: Path, create: bool) -> None:
    """Refuse a path that cannot be an outboxd SQLite database, saying why; with
    ``create``, make a file that does not exist yet, 0600 (its directories 0700)."""
    try:
        if path.is_dir():
            raise DatabaseFileError(f"{path} is a directory, not a database file")
        if not path.exists():
            parent = next((p for p in path.parents if p.exists()), None)
            if parent is not None and not parent.is_dir():
                raise DatabaseFileError(f"{path}: {parent} is not a directory")
            if not create:
                raise DatabaseFileError(
                    f"no database at {path} (`outboxd migrate` creates it; is the path right?)"
                )
            # owner-only, whatever the umask: it holds every payload; SQLite gives its
            # -wal and -shm the database file's mode
            with contextlib.suppress(FileExistsError):  # another migrate made it just now
                os.close(create_private(path))
            return
        if not path.is_file():
            raise DatabaseFileError(f"{path} is not a regular file")
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreUnavailable(f"cannot use {path}: {exc.strerror or exc}") from None
    if head and head != SQLITE_MAGIC:
        raise DatabaseFileError(f"{path} is not an SQLite database")


def _sqlite(settings: Address, create: bool) -> pw.SqliteDatabase:
    path = sqlite_path(settings.url)
    if path is None:
        raise StoreError(
            "an in-memory SQLite database cannot be shared between the store thread and "
            "other processes; give a file path such as sqlite:///var/outboxd.db"
        )
    check_sqlite_file(Path(path), create)
    db = _SqliteDatabase(
        path,
        pragmas={
            "journal_mode": "wal",
            "synchronous": "normal",
            "foreign_keys": 1,
            "busy_timeout": int(settings.busy_timeout * 1000),
            # the WAL file back to this size once a checkpoint has emptied it: a burst
            # of writes (a purge, an index merge) grows it, and it would keep its
            # largest size for good
            "journal_size_limit": WAL_SIZE_LIMIT,
        },
        timeout=settings.busy_timeout,
        lock_type="IMMEDIATE",  # take the write lock at BEGIN: no upgrade deadlocks
        returning_clause=True,
    )
    db.lock_wait = max(1.0, settings.busy_timeout)
    return db


def _postgres(address: Address) -> pw.PostgresqlDatabase:
    dbname, params = postgres_params(address.url, address)
    return pw.PostgresqlDatabase(dbname, prefer_psycopg3=True, **params)
