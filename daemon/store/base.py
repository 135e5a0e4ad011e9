"""What every store operation shares: the unit of work, time, and status events."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import peewee as pw

from daemon.store.db import StoreUnavailable, is_postgres, unavailable_on_error
from daemon.store.models import StatusEvent, as_utc, database_proxy, utcnow

T = TypeVar("T")
CHUNK = 500  # rows per statement: well inside SQLite's and PostgreSQL's parameter limits


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def literal(value: str) -> pw.SQL:
    """A constant written into the SQL, so a partial index on it can be used."""
    if "'" in value:
        raise ValueError("literal() takes plain constants only")
    return pw.SQL(f"'{value}'")


class EventRow:
    """One status change to record: (message, from, to, actor, details)."""

    __slots__ = ("actor", "details", "from_status", "message_id", "to_status")

    def __init__(
        self,
        message_id: int,
        from_status: str | None,
        to_status: str,
        actor: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message_id = message_id
        self.from_status = from_status
        self.to_status = to_status
        self.actor = actor
        self.details = details


class StoreBase:
    """Holds the database; every operation runs through ``_write`` or ``_read``."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.postgres = is_postgres(db)
        database_proxy.initialize(db)

    @staticmethod
    def _now(now: datetime | None) -> datetime:
        return utcnow() if now is None else as_utc(now)

    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work`` as one transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        try:
            with unavailable_on_error(), self.db.atomic():
                return work()
        except StoreUnavailable:
            self._drop_connection()
            raise

    def _read(self, work: Callable[[], T]) -> T:
        """Run read-only ``work`` without taking SQLite's write lock."""
        try:
            with unavailable_on_error():
                return work()
        except StoreUnavailable:
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        """Forget a connection that failed, so the next unit of work opens a new one."""
        try:
            if not self.db.is_closed():
                self.db.close()
        except Exception:
            self.db._state.reset()

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def _add_events(self, events: Sequence[EventRow], now: datetime) -> None:
        for chunk in chunked(events):
            StatusEvent.insert_many(
                [
                    {
                        "message": e.message_id,
                        "from_status": e.from_status,
                        "to_status": e.to_status,
                        "actor": e.actor,
                        "details": e.details,
                        "at": now,
                    }
                    for e in chunk
                ]
            ).as_rowcount().execute()

    def _values(self, rows: Sequence[Sequence[Any]], casts: Sequence[str]) -> tuple[str, list[Any]]:
        """``(VALUES (...), ...)`` with parameters; typed on PostgreSQL by casting
        the first row (SQLite needs no casts and would misread some)."""
        param = self.db.param
        first = ", ".join(f"CAST({param} AS {cast})" if self.postgres else param for cast in casts)
        rest = ", ".join([param] * len(casts))
        sql = (
            "(VALUES "
            + ", ".join(f"({first})" if i == 0 else f"({rest})" for i in range(len(rows)))
            + ") AS v"
        )
        return sql, [value for row in rows for value in row]
