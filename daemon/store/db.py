"""The database from a URL: SQLite (WAL) for one machine, PostgreSQL for several."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee as pw
from pydantic import SecretStr, field_validator

from daemon.fields import Model, PositiveDuration


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """The database did not answer or refused the unit of work; try again later."""


STORE_SCHEMES = ("sqlite", "postgres", "postgresql")


class DatabaseSettings(Model):
    """``database:`` in the YAML file (a URL alone is short for ``{url: …}``)."""

    url: SecretStr
    busy_timeout: PositiveDuration = 10.0
    connect_timeout: PositiveDuration = 10.0

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: SecretStr) -> SecretStr:
        scheme = urlsplit(url.get_secret_value()).scheme
        if scheme not in STORE_SCHEMES:
            raise ValueError(
                f"unsupported database scheme {scheme or '(none)'!r}: "
                "use sqlite:///PATH or postgresql://USER@HOST/DB"
            )
        return url


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Turn a driver's connection-level error into ``StoreUnavailable``."""
    try:
        yield
    except (pw.OperationalError, pw.InterfaceError) as exc:
        raise StoreUnavailable(f"database unavailable: {_one_line(exc)}") from exc


def is_postgres(db: pw.Database) -> bool:
    return isinstance(db, pw.PostgresqlDatabase)


def open_database(settings: DatabaseSettings) -> pw.Database:
    """A peewee database for the URL; connections open lazily, one per thread."""
    url = settings.url.get_secret_value()
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return _sqlite(parts.path, settings)
    if parts.scheme in ("postgres", "postgresql"):
        return _postgres(url, settings)
    raise StoreError(f"unsupported database scheme {parts.scheme!r}")


class _SqliteDatabase(pw.SqliteDatabase):
    """SQLite whose connection set-up waits out a lock: switching a new file to
    WAL takes a lock SQLite's busy handler does not wait for, so processes
    opening a fresh database at once could fail with "database is locked"."""

    def _set_pragmas(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + max(1.0, float(self._timeout or 0))
        delay = 0.005
        while True:
            try:
                super()._set_pragmas(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlite(raw_path: str, settings: DatabaseSettings) -> pw.SqliteDatabase:
    # sqlite:///var/x.db is relative to the working directory; sqlite:////abs/x.db absolute.
    path = unquote(raw_path[1:] if raw_path.startswith("/") else raw_path)
    if not path or path == ":memory:":
        raise StoreError(
            "an in-memory SQLite database cannot be shared between the store thread and "
            "other processes; give a file path such as sqlite:///var/outboxd.db"
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _SqliteDatabase(
        path,
        pragmas={
            "journal_mode": "wal",
            "synchronous": "normal",
            "foreign_keys": 1,
            "busy_timeout": int(settings.busy_timeout * 1000),
        },
        timeout=settings.busy_timeout,
        lock_type="IMMEDIATE",  # take the write lock at BEGIN: no upgrade deadlocks
        returning_clause=True,
    )


def _postgres(url: str, settings: DatabaseSettings) -> pw.PostgresqlDatabase:
    parts = urlsplit(url)
    params: dict[str, object] = dict(parse_qsl(parts.query))
    params.setdefault("connect_timeout", max(1, round(settings.connect_timeout)))
    params.setdefault("application_name", "outboxd")
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        params["host"] = parts.hostname
    if parts.port:
        params["port"] = parts.port
    dbname = unquote(parts.path.lstrip("/")) or None
    return pw.PostgresqlDatabase(dbname, prefer_psycopg3=True, **params)
