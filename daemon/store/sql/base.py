"""What the two dialects share: table and column names, the status event row,
running a statement, and the methods every dialect has (``Dialect``).

A dialect object holds one database and every statement of the delivery path
by name, written out for its backend (``sqlite.py``, ``postgres.py``); what
differs between the backends (a row lock, a wake-up, how many statements a
claim takes) is a method of the dialect, so no operation asks which backend
it runs on."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import peewee as pw

from daemon.store.address import NOTIFY_CHANNEL
from daemon.store.models import db_timestamp, read_timestamp

T = TypeVar("T")
Q = TypeVar("Q", bound=pw.Select)
Row = tuple[Any, ...]
CHUNK = 500  # rows per statement: well inside SQLite's and PostgreSQL's parameter limits

MESSAGE = "outboxd_message"
EVENT = "outboxd_status_event"
VISIT = "outboxd_visit"
BUCKET = "outboxd_rate_bucket"
BREAKER = "outboxd_breaker"
TALLY = "outboxd_tally"
MINUTE_TALLY = "outboxd_minute_tally"
RUN = "outboxd_job_run"
MESSAGE_TEXT = "outboxd_message_text"  # payloads as text (SQLite: FTS5; PostgreSQL: trigrams)
MESSAGE_FIELD = "outboxd_message_field"
EVENT_COLUMNS = "message_id, from_status, to_status, actor, details, at"
MESSAGE_COLUMNS = (
    'channel, kind, "key", payload, status, attempts, next_attempt_at, after_id, '
    "group_key, created_at, updated_at, visit_id"
)
MESSAGE_WIDTH = 12
RUN_COLUMNS = (
    "schedule_id, fire_time, attempt, trigger, status, due_at, started_at, finished_at, "
    "lease_owner, lease_expires_at, note, created_at"
)
RUN_WIDTH = 12
# a claimed message: (id, channel, kind, key, payload, attempts, created_at, after_id, group_key)
ClaimedRow = Sequence[Any]
# a new message: (channel, kind, key, payload, due, after_id, group_key, visit_id)
NewRow = tuple[str, str, str, bytes, str, int | None, str | None, int | None]
# an outcome: (id, status, attempts added, next attempt, error, response, sent at,
# event details as JSON): timestamps in their stored form
OutcomeRow = tuple[int, str, int, str | None, str | None, str | None, str | None, str | None]
OUTCOME_WIDTH = 8


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


class Dialect(ABC):
    """One backend's statements and ways, on one database."""

    name: ClassVar[str]

    def __init__(self, db: pw.Database) -> None:
        self.db = db

    # --- running statements ------------------------------------------------------------

    def run(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run a statement that answers no rows: how many it changed."""
        return int(self.db.execute_sql(sql, params).rowcount)

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        return list(self.db.execute_sql(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Row:
        row = self.db.execute_sql(sql, params).fetchone()
        assert row is not None, "a statement that answers one row answered none"
        return tuple(row)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """``executemany``: one statement, a row of parameters each."""
        with pw.__exception_wrapper__:  # type: ignore[attr-defined]  # peewee's error mapping
            cursor = self.db.cursor()
            try:
                cursor.executemany(sql, rows)
            finally:
                cursor.close()

    # --- schema ------------------------------------------------------------------------

    @abstractmethod
    def statements(self, script: str) -> list[str]:
        """The statements of a DDL file, each whole (a trigger's or a function's
        body holds semicolons of its own)."""

    def run_script(self, script: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a DDL file's statements in order; a statement naming one of
        ``params`` (``:name`` or ``%(name)s``) is given them all."""
        for statement in self.statements(script):
            wanted = params is not None and any(name in statement for name in params)
            self.run(statement, dict(params or {}) if wanted else ())

    @abstractmethod
    def require_features(self) -> None:
        """Raise ``SchemaMismatch`` when the server lacks what these statements use."""

    # --- the delivery path -------------------------------------------------------------

    @abstractmethod
    def insert_events(self, events: Sequence[EventRow], at: datetime) -> None:
        """Write status events, all at ``at``."""

    @abstractmethod
    def insert_messages(self, rows: Sequence[NewRow], actor: str, stamp: str) -> list[Row]:
        """Insert new messages (pending, created at ``stamp``) with their creation
        events, skipping (channel, key) pairs already stored: (id, channel, key) of
        those inserted, in order."""

    @abstractmethod
    def claim(
        self, channel: str, owner: str, limit: int, stamp: str, expiry: str, ordered: bool
    ) -> list[ClaimedRow]:
        """Lease up to ``limit`` due messages of one channel to ``owner`` until
        ``expiry``, with their 'sending' events. On an ``ordered`` channel a message
        of a group waits while an older one of its group is unfinished."""

    @abstractmethod
    def record_outcomes(self, owner: str, rows: Sequence[OutcomeRow], stamp: str) -> dict[int, str]:
        """Write outcomes (at most ``CHUNK``) to the messages ``owner`` still holds,
        with their events: id → status written."""

    @abstractmethod
    def renew_leases(self, owner: str, ids: Sequence[int], until: str, stamp: str) -> list[int]:
        """Extend the leases ``owner`` still holds to ``until``: the ids renewed."""

    @abstractmethod
    def stale_leases(self, stamp: str, limit: int) -> list[tuple[int, str, datetime]]:
        """Up to ``limit`` leases that ran out before ``stamp``, oldest first, locked
        (skipping those another transaction holds): (id, owner, expired at)."""

    @abstractmethod
    def release_leases(self, ids: Sequence[int], stamp: str) -> list[int]:
        """Put these leased messages back to pending: the ids released."""

    @abstractmethod
    def locked_bucket(self, channel: str) -> tuple[float, datetime] | None:
        """A channel's token bucket (tokens, updated at), locked until the commit."""

    @abstractmethod
    def create_bucket(self, channel: str, tokens: float, stamp: str) -> None:
        """A channel's bucket, unless another process made it first."""

    @abstractmethod
    def save_bucket(self, channel: str, tokens: float, stamp: str) -> None: ...

    @abstractmethod
    def message_visits(self, ids: Sequence[int]) -> dict[int, int]:
        """message id → the id of its visit, for those of ``ids`` linked to one."""

    @abstractmethod
    def locked_progress(self, visit_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """visit id → its task progress, the visits locked until the commit."""

    @abstractmethod
    def save_progress(self, visit_id: int, progress: dict[str, Any], stamp: str) -> None: ...

    @abstractmethod
    def report_breaker(
        self, channel: str, owner: str, state: str, detail: str | None, stamp: str
    ) -> None:
        """Keep a breaker's state (``since`` kept while the state stays the same)."""

    @abstractmethod
    def clear_breaker(self, channel: str, owner: str) -> None: ...

    @abstractmethod
    def fold_tallies(self, old: str, recent: str, at_least: int) -> int:
        """Drop the minute tallies before ``old`` and sum the tallies' rows into
        one per key where a writer adds rows (from ``recent`` for the minutes),
        once there are more than ``at_least``: the rows removed."""

    @abstractmethod
    def notify(self, channels: Iterable[str]) -> None:
        """Wake the listeners of these channels when the transaction commits."""

    def listen_conninfo(self) -> dict[str, Any] | None:
        """Connection parameters for a listener of ``notify``; None: no such signal."""
        return None

    # --- the rest ----------------------------------------------------------------------

    @abstractmethod
    def insert_runs(self, rows: int) -> str:
        """Insert ``rows`` runs of the fire ledger, skipping those (schedule, fire
        time, attempt) already has; returns (id, schedule_id, fire_time, attempt)
        of those inserted. Params: a row of ``RUN_WIDTH`` values per run."""

    @abstractmethod
    def for_update(self, query: Q) -> Q:
        """The query's rows locked until the commit (SQLite: the write lock is the
        whole database's, taken at BEGIN)."""

    @abstractmethod
    def skip_locked(self, query: Q) -> Q:
        """The query's rows locked, skipping those another transaction holds."""

    @abstractmethod
    def exclusive(self, key: int) -> None:
        """One transaction at a time past this point, for ``key``, until the commit."""

    @abstractmethod
    def try_exclusive(self, key: int) -> bool:
        """``exclusive`` if no other transaction holds ``key``: True when taken."""

    @abstractmethod
    def key_prefix(self, field: pw.Field, prefix: str) -> pw.ColumnBase:
        """Keys beginning with ``prefix``, case and all, as an index serves it."""

    # --- content search --------------------------------------------------------------

    def insert_fields(self, rows: Sequence[tuple[str, str, int]]) -> None:
        """Keep the fields new messages are found by: (name, value, message id)."""
        row = "(" + ", ".join([self.db.param] * 3) + ")"
        for chunk in chunked(rows):
            values = ", ".join([row] * len(chunk))
            self.run(
                f"INSERT INTO {MESSAGE_FIELD} (name, value, message_id) VALUES {values} "
                "ON CONFLICT DO NOTHING",
                [v for row in chunk for v in row],
            )

    def text_index_rows(self) -> int:
        """The rows of the payload text index's storage (SQLite: FTS5's blocks, a
        page each at most); 0 where (auto)vacuum keeps the index (PostgreSQL)."""
        return 0

    def compact_text_index(self, pages: int) -> int:
        """Merge about ``pages`` pages of the payload text index, dropping what
        deleted messages left in it; answers the rows the merge wrote (0: nothing
        left to merge). PostgreSQL's GIN index is kept by (auto)vacuum: 0."""
        return 0

    @abstractmethod
    def text_match(self, message: type[pw.Model], text: str) -> pw.ColumnBase:
        """Messages whose payload holds ``text`` (any case), as a WHERE clause on
        ``message`` (the bound model) that the text index serves."""

    def text_source(self, text: str) -> tuple[pw.Table, pw.ColumnBase, pw.ColumnBase] | None:
        """Where a listing of the messages holding ``text`` may start, newest
        first: (a table of message ids, its id column, the clause choosing the
        matches), read in descending id order; None where ``text_match`` in the
        WHERE clause is the way (the planner chooses)."""
        return None


def stamp_of(value: datetime | None) -> str | None:
    return None if value is None else db_timestamp(value)


__all__ = [
    "CHUNK",
    "NOTIFY_CHANNEL",
    "Dialect",
    "EventRow",
    "chunked",
    "db_timestamp",
    "read_timestamp",
    "stamp_of",
]


def literal(value: str) -> pw.SQL:
    """A constant written into the SQL, so a partial index on it can be used."""
    if "'" in value:
        raise ValueError("literal() takes plain constants only")
    return pw.SQL(f"'{value}'")
