"""A Khanza-like database in a SQLite file, read through the same SQL as MariaDB.

For the demo suite and for trying the poller without a database server: the
source's queries are written for MariaDB (PyMySQL's ``%(name)s``/``%s``
placeholders, ``CONCAT``, ``LEFT``, ``ELT``, ``DAYOFWEEK``), so this adapter gives
a read-only ``sqlite3`` connection the shape ``KhanzaSource`` expects of a PyMySQL
one: placeholders rewritten, those four functions defined (``LEFT`` under another
name: SQLite reserves the word), the snapshot statement
mapped to ``BEGIN`` (a read transaction is one snapshot in WAL mode), the
``SET SESSION`` statement limits accepted and enforced here (a query running past
``read_timeout`` is interrupted), and every ``sqlite3`` error raised as PyMySQL's
``OperationalError`` so the source reports it as it would a server's.

DATE, TIME and DATETIME columns hold text as MariaDB prints it ('2026-11-23',
'08:15:00', '0000-00-00 00:00:00'); the source reads such text already.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql

SCHEME = "sqlite"
_NAMED = re.compile(r"%\((\w+)\)s")
_LEFT_CALL = re.compile(r"\bLEFT\s*\(", re.IGNORECASE)  # a keyword in SQLite (LEFT JOIN)
_PLAIN = re.compile(r"%s")
_SNAPSHOT = "START TRANSACTION"
_SESSION_LIMIT = "SET SESSION"
_PROGRESS_STEPS = 5_000  # SQLite VM instructions between deadline checks


def sqlite_sql(sql: str, named: bool | None) -> str:
    """``LEFT(`` (a keyword to SQLite) as ``MYSQL_LEFT(``; with parameters
    (``named`` True or False; None: none, and PyMySQL leaves the text alone then),
    PyMySQL's placeholders as sqlite3's: ``%(x)s`` → ``:x``, ``%s`` → ``?``,
    ``%%`` → ``%``."""
    sql = _LEFT_CALL.sub("MYSQL_LEFT(", sql)
    if named is None:
        return sql
    parts = sql.split("%%")
    swap = (lambda p: _NAMED.sub(r":\1", p)) if named else (lambda p: _PLAIN.sub("?", p))
    return "%".join(swap(part) for part in parts)


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return value


def sqlite_params(params: Any) -> Any:
    if params is None:
        return ()
    if isinstance(params, Mapping):
        return {k: _value(v) for k, v in params.items()}
    return [_value(v) for v in params]


# --- MariaDB's functions the queries use ------------------------------------------


def _concat(*parts: Any) -> str | None:
    return None if any(p is None for p in parts) else "".join(str(p) for p in parts)


def _left(text: Any, count: Any) -> str | None:
    return None if text is None or count is None else str(text)[: int(count)]


def _elt(index: Any, *items: Any) -> Any:
    if not isinstance(index, int) or not 1 <= index <= len(items):
        return None
    return items[index - 1]


def _dayofweek(day: Any) -> int | None:
    """1 = Sunday … 7 = Saturday, as MariaDB counts."""
    try:
        found = date.fromisoformat(str(day)[:10])
    except ValueError:
        return None
    return found.isoweekday() % 7 + 1


def _error(exc: sqlite3.Error) -> pymysql.err.OperationalError:
    return pymysql.err.OperationalError(0, f"SQLite: {exc}")


class Cursor:
    """The part of PyMySQL's cursor the source uses."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cursor = conn.raw.cursor()
        self.description: Sequence[Sequence[Any]] | None = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def execute(self, sql: str, params: Any = None) -> int:
        head = sql.lstrip().upper()
        if head.startswith(_SESSION_LIMIT):
            return 0  # the deadline is this adapter's own (``read_timeout``)
        if head.startswith(_SNAPSHOT):
            sql, params = "BEGIN", None
        named = None if params is None else isinstance(params, Mapping)
        self._conn.arm()
        try:
            self._cursor.execute(sqlite_sql(sql, named), sqlite_params(params))
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                raise pymysql.err.OperationalError(
                    0, f"SQLite: the query ran past read_timeout ({self._conn.read_timeout:g}s)"
                ) from None
            raise _error(exc) from None
        except sqlite3.Error as exc:
            raise _error(exc) from None
        finally:
            self._conn.disarm()
        self.description = self._cursor.description
        return max(self._cursor.rowcount, 0)

    def fetchone(self) -> tuple[Any, ...] | None:
        try:
            row: tuple[Any, ...] | None = self._cursor.fetchone()
            return row
        except sqlite3.Error as exc:
            raise _error(exc) from None

    def fetchall(self) -> list[tuple[Any, ...]]:
        try:
            return list(self._cursor.fetchall())
        except sqlite3.Error as exc:
            raise _error(exc) from None


class Connection:
    """A read-only SQLite connection that looks enough like PyMySQL's."""

    def __init__(self, raw: sqlite3.Connection, read_timeout: float) -> None:
        self.raw = raw
        self.read_timeout = read_timeout
        self._deadline = 0.0
        raw.create_function("CONCAT", -1, _concat, deterministic=True)
        raw.create_function("MYSQL_LEFT", 2, _left, deterministic=True)
        raw.create_function("ELT", -1, _elt, deterministic=True)
        raw.create_function("DAYOFWEEK", 1, _dayofweek, deterministic=True)

    def arm(self) -> None:
        self._deadline = time.monotonic() + self.read_timeout
        self.raw.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)

    def disarm(self) -> None:
        self.raw.set_progress_handler(None, 0)

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def cursor(self) -> Cursor:
        return Cursor(self)

    def close(self) -> None:
        self.raw.close()


def connect(
    *,
    path: str,
    connect_timeout: float = 10.0,
    read_timeout: float = 30.0,
    **_ignored: Any,
) -> Connection:
    """Open ``path`` read-only (it must exist: a missing file is an error, not an
    empty database). ``connect_timeout`` bounds the wait for a writer's lock."""
    if not Path(path).is_file():
        raise pymysql.err.OperationalError(0, f"SQLite: no database file at {path}")
    try:
        raw = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=connect_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise _error(exc) from None
    return Connection(raw, read_timeout)
