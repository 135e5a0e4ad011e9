"""The unit of work every part of the store runs through: one database, its
dialect and its models; ``write`` (one transaction) and ``read``; time; status
events and wake-ups inside a unit (PostgreSQL's NOTIFY, sent with the commit; on
SQLite the doorbell, rung once the commit is done: ``daemon.store.doorbell``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

import peewee as pw

from daemon.domain.clock import as_utc, utcnow
from daemon.domain.errors import StoreUnavailable
from daemon.store.db import unavailable_on_error
from daemon.store.doorbell import Bell, folder_of
from daemon.store.models import Models
from daemon.store.sql import dialect_for
from daemon.store.sql.base import Dialect, EventRow

T = TypeVar("T")


class Unit:
    """Runs units of work on one database: ``write`` as one transaction (``BEGIN
    IMMEDIATE`` on SQLite), ``read`` without SQLite's write lock. A connection
    that failed is dropped, so the next unit opens a new one."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.sql: Dialect = dialect_for(db)
        self.models = Models(db)
        folder = folder_of(db.database) if isinstance(db, pw.SqliteDatabase) else None
        self.bell = Bell(folder) if folder is not None else None
        self._due = threading.local()  # channels to ring for once this thread's write commits

    def _pending(self) -> set[str]:
        due: set[str] | None = getattr(self._due, "channels", None)
        if due is None:
            due = self._due.channels = set()
        return due

    @staticmethod
    def now(now: datetime | None) -> datetime:
        return utcnow() if now is None else as_utc(now)

    def write(self, work: Callable[[], T]) -> T:
        try:
            with unavailable_on_error(self.db), self.db.atomic():
                result = work()
        except BaseException as exc:
            if not self.db.in_transaction():  # rolled back: nothing to ring for
                self._pending().clear()
            if isinstance(exc, StoreUnavailable):
                self.drop_connection()
            raise
        if self.bell is not None and not self.db.in_transaction():
            due = self._pending()
            if due:
                self.bell.ring(due)
                due.clear()
        return result

    def read(self, work: Callable[[], T]) -> T:
        try:
            with unavailable_on_error(self.db):
                return work()
        except StoreUnavailable:
            self.drop_connection()
            raise

    def drop_connection(self) -> None:
        """Forget a connection that failed, so the next unit of work opens a new one."""
        try:
            if not self.db.is_closed():
                self.db.close()
        except Exception:
            self.db._state.reset()  # type: ignore[attr-defined]  # peewee's per-thread state

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
        if self.bell is not None:
            self.bell.close()

    # --- inside a unit of work -------------------------------------------------------

    def events(self, events: Sequence[EventRow], now: datetime) -> None:
        """Write status changes, all at ``now``."""
        self.sql.insert_events(events, now)

    def notify(self, channels: Iterable[str]) -> None:
        """Wake the delivery loops of these channels when the transaction commits."""
        channels = list(channels)
        self.sql.notify(channels)
        if self.bell is not None:
            self._pending().update(channels)
