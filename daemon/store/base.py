"""What every store operation shares: the unit of work, time, and status events."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import peewee as pw

from daemon.domain.clock import as_utc, utcnow
from daemon.domain.errors import StoreUnavailable
from daemon.domain.messages import Progress
from daemon.store.db import is_postgres, unavailable_on_error
from daemon.store.models import database_proxy, db_timestamp
from daemon.store.sql import Statements

T = TypeVar("T")
NOTIFY_CHANNEL = "outboxd"  # PostgreSQL NOTIFY channel; the payload is the outbox channel
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
        details: dict[str, Any] | str | None = None,  # a str is JSON already
    ) -> None:
        self.message_id = message_id
        self.from_status = from_status
        self.to_status = to_status
        self.actor = actor
        self.details = details

    def values(self) -> tuple[int, str | None, str, str, str | None]:
        """(message, from, to, actor, details as JSON text)."""
        details = self.details
        if details is not None and not isinstance(details, str):
            details = json.dumps(details, sort_keys=True)
        return self.message_id, self.from_status, self.to_status, self.actor, details


class StoreBase:
    """Holds the database; every operation runs through ``_write`` or ``_read``."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.postgres = is_postgres(db)
        self.sql = Statements(self.postgres)
        database_proxy.initialize(db)

    @staticmethod
    def _now(now: datetime | None) -> datetime:
        return utcnow() if now is None else as_utc(now)

    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work`` as one transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        try:
            with unavailable_on_error(self.db), self.db.atomic():
                return work()
        except StoreUnavailable:
            self._drop_connection()
            raise

    def _read(self, work: Callable[[], T]) -> T:
        """Run read-only ``work`` without taking SQLite's write lock."""
        try:
            with unavailable_on_error(self.db):
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

    def ping(self) -> bool:
        """Does the database answer? (For health checks.)"""
        return self._read(lambda: self.db.execute_sql("SELECT 1").fetchone()[0] == 1)

    def _notify(self, channels: Iterable[str]) -> None:
        """Wake PostgreSQL listeners (dispatchers) when the transaction commits."""
        if self.postgres:
            for channel in sorted(set(channels)):
                self.db.execute_sql("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, channel))

    def _merge_message_progress(self, progress: Mapping[int, Progress], now: datetime) -> None:
        """Merge outcome entries into the messages' visits (the visit operations)."""
        raise NotImplementedError

    def _audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any] | None,
        changed: int,
        now: datetime,
    ) -> int:
        """Record an operator action, inside the unit of work that makes it; its id."""
        from daemon.store.models import AuditEntry

        return int(
            AuditEntry.insert(
                actor=actor, action=action, target=target, details=details, changed=changed, at=now
            ).execute()
        )

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def _add_events(self, events: Sequence[EventRow], now: datetime) -> None:
        if not events:
            return
        at = db_timestamp(now)
        if not self.postgres:  # one statement: one step, not one per row
            table = json.dumps([e.values() for e in events])
            self._execute(self.sql.insert_events_json, {"at": at, "events": table})
            return
        rows = [(*e.values(), at) for e in events]
        self._executemany(self.sql.insert_event, rows)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with pw.__exception_wrapper__:
            cursor = self.db.cursor()
            try:
                cursor.executemany(sql, rows)
            finally:
                cursor.close()

    def _execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        return list(self.db.execute_sql(sql, params).fetchall())
