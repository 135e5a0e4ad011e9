"""The hot-path statements, written out once per dialect.

Claiming, recording outcomes, inserting messages and status events run
thousands of times a second; building them through peewee's expression
layer cost more than running them. Here they are plain SQL, built once
(or once per row count), with the status event written in the same
statement on PostgreSQL (a data-modifying CTE: one round trip); on SQLite
as statements that each answer in one row, whatever the batch size (see
below why), with ids passed as JSON arrays.

A statement of fixed shape takes named parameters (``:name`` on SQLite,
``%(name)s`` on PostgreSQL), listed in its docstring; one with a row of
values per message takes them in the order of its column list.
"""

from __future__ import annotations

import functools

from daemon.domain.statuses import DELIVERED, PENDING, SENDING

MESSAGE = "outboxd_message"
EVENT = "outboxd_status_event"
_EVENT_COLUMNS = "message_id, from_status, to_status, actor, details, at"
_MESSAGE_COLUMNS = (
    'channel, kind, "key", payload, status, attempts, next_attempt_at, after_id, '
    "group_key, created_at, updated_at, visit_id"
)
MESSAGE_WIDTH = 12
RUN = "outboxd_job_run"
_RUN_COLUMNS = (
    "schedule_id, fire_time, attempt, trigger, status, due_at, started_at, finished_at, "
    "lease_owner, lease_expires_at, note, created_at"
)
RUN_WIDTH = 12
_DELIVERED = "(" + ", ".join(f"'{status}'" for status in DELIVERED) + ")"
_UNFINISHED = f"('{PENDING}', '{SENDING}')"  # what an older message of a group may still be
# (id, status, attempts added, next attempt, error, response, sent at, event details)
OUTCOME_WIDTH = 8
_OUTCOME_TYPES = (
    "BIGINT",
    "VARCHAR(16)",
    "INTEGER",
    "TIMESTAMP",
    "TEXT",
    "TEXT",
    "TIMESTAMP",
    "TEXT",
)


class Statements:
    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.p = "%s" if postgres else "?"

    def _n(self, name: str) -> str:
        """The named parameter ``name`` in this dialect."""
        return f"%({name})s" if self.postgres else f":{name}"

    def _row(self, width: int) -> str:
        return "(" + ", ".join([self.p] * width) + ")"

    @functools.cached_property
    def insert_event(self) -> str:
        """One status event; for ``executemany``."""
        return f"INSERT INTO {EVENT} ({_EVENT_COLUMNS}) VALUES {self._row(6)}"

    @functools.cached_property
    def insert_events_json(self) -> str:
        """SQLite: many status events in one statement (one step, instead of one
        per row with ``executemany``). Params: ``at``, ``events`` (a JSON array of
        [message_id, from, to, actor, details] arrays)."""
        take = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(5))
        return f"INSERT INTO {EVENT} ({_EVENT_COLUMNS}) SELECT {take}, :at FROM json_each(:events)"

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per store, a few sizes
    def insert_runs(self, rows: int) -> str:
        """Insert ``rows`` runs of the fire ledger, skipping those (schedule, fire
        time, attempt) already has: another scheduler claimed them; returns (id,
        schedule_id, fire_time, attempt) of those inserted. Params: a row of values
        per run, in the order of its column list."""
        values = ", ".join([self._row(RUN_WIDTH)] * rows)
        return (
            f"INSERT INTO {RUN} ({_RUN_COLUMNS}) VALUES {values} "
            "ON CONFLICT (schedule_id, fire_time, attempt) DO NOTHING "
            "RETURNING id, schedule_id, fire_time, attempt"
        )

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per store, a few sizes
    def insert_messages(self, rows: int) -> str:
        """SQLite: insert ``rows`` messages, skipping (channel, key) pairs already
        stored; returns (id, channel, key) of those inserted. (PostgreSQL:
        ``insert_messages_arrays``.)"""
        values = ", ".join([self._row(MESSAGE_WIDTH)] * rows)
        return (
            f"INSERT INTO {MESSAGE} ({_MESSAGE_COLUMNS}) VALUES {values} "
            f'ON CONFLICT (channel, "key") DO NOTHING RETURNING id, channel, "key"'
        )

    @functools.cached_property
    def insert_messages_arrays(self) -> str:
        """PostgreSQL: ``insert_messages`` for any number of rows, one array per
        varying column (unnested in order, so ids follow the batch), and the
        creation events. One statement of fixed shape: psycopg converts it once,
        where a ``VALUES`` list of 500 rows (6,000 placeholders) is parsed again at
        every call. Params: ``status``, ``at``, ``actor`` and the arrays
        ``channel``, ``kind``, ``key``, ``payload``, ``due``, ``after``, ``group``,
        ``visit``."""
        n = self._n
        arrays = ", ".join(
            f"{n(name)}::{kind}[]"
            for name, kind in (
                ("channel", "varchar"),
                ("kind", "varchar"),
                ("key", "varchar"),
                ("payload", "bytea"),
                ("due", "timestamp"),
                ("after", "bigint"),
                ("group", "varchar"),
                ("visit", "bigint"),
            )
        )
        insert = (
            f"INSERT INTO {MESSAGE} ({_MESSAGE_COLUMNS}) "
            f"SELECT u.channel, u.kind, u.key, u.payload, {n('status')}, 0, u.due, u.after_id, "
            f"u.group_key, {n('at')}, {n('at')}, u.visit_id FROM unnest({arrays}) "
            "WITH ORDINALITY AS u(channel, kind, key, payload, due, after_id, group_key, "
            'visit_id, n) ORDER BY u.n ON CONFLICT (channel, "key") DO NOTHING '
            'RETURNING id, channel, "key"'
        )
        return (
            f"WITH ins AS ({insert}), ev AS (INSERT INTO {EVENT} ({_EVENT_COLUMNS}) "
            f"SELECT id, NULL, {n('status')}, {n('actor')}, NULL, {n('at')} FROM ins) "
            'SELECT id, channel, "key" FROM ins'
        )

    def _due(self, ordered: bool) -> str:
        """The ids of one channel's due messages, oldest due first. Params:
        ``channel``, ``now``, ``limit``."""
        n = self._n
        in_order = (
            " AND (m.group_key IS NULL OR NOT EXISTS (SELECT 1 FROM outboxd_message o"
            " WHERE o.channel = m.channel AND o.group_key = m.group_key AND o.id < m.id"
            f" AND o.status IN {_UNFINISHED}))"
            if ordered
            else ""
        )
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        return (
            f"SELECT m.id FROM {MESSAGE} m WHERE m.channel = {n('channel')}"
            f" AND m.status = 'pending' AND m.next_attempt_at <= {n('now')}"
            " AND (m.after_id IS NULL OR EXISTS (SELECT 1"
            f" FROM {MESSAGE} a WHERE a.id = m.after_id AND a.status IN {_DELIVERED}))"
            f"{in_order} ORDER BY m.next_attempt_at, m.id LIMIT {n('limit')}{lock}"
        )

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def claim(self, ordered: bool) -> str:
        """PostgreSQL: lease due messages of one channel and write their events in
        one statement. Params: ``channel``, ``now``, ``limit``, ``owner``,
        ``expiry`` (of the lease)."""
        n, t = self._n, MESSAGE
        # Materialized, so the rows are chosen once: as IN (subquery), PostgreSQL
        # may rescan it per row and lease far past the limit.
        update = (
            f"UPDATE {t} SET status = 'sending', lease_owner = {n('owner')},"
            f" lease_expires_at = {n('expiry')}, updated_at = {n('now')}"
            f" FROM due WHERE {t}.id = due.id AND {t}.status = 'pending'"
            f' RETURNING {t}.id, {t}.channel, {t}.kind, {t}."key", {t}.payload, {t}.attempts,'
            f" {t}.created_at, {t}.after_id, {t}.group_key"
        )
        details = "'{\"attempt\": ' || (attempts + 1) || '}'"
        return (
            f"WITH due AS MATERIALIZED ({self._due(ordered)}), claimed AS ({update}),"
            f" ev AS (INSERT INTO {EVENT} ({_EVENT_COLUMNS}) SELECT id, 'pending', 'sending',"
            f" {n('owner')}, {details}, {n('now')} FROM claimed) SELECT * FROM claimed"
        )

    # SQLite: every statement below answers in one row, however many messages it
    # covers. Python's sqlite3 lets go of the interpreter lock for each row it
    # steps to; a claim returning 100 rows would wait for the event loop's thread
    # 100 times. Ids travel as JSON arrays (json_each).

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def due_ids(self, ordered: bool) -> str:
        """SQLite: the due ids as one JSON array. Params: ``channel``, ``now``, ``limit``."""
        return f"SELECT json_group_array(id) FROM ({self._due(ordered)})"

    @functools.cached_property
    def lease(self) -> str:
        """SQLite: lease the messages of a JSON array of ids that are still pending.
        Params: ``owner``, ``expiry`` (of the lease), ``now``, ``ids``."""
        return (
            f"UPDATE {MESSAGE} SET status = 'sending', lease_owner = :owner,"
            " lease_expires_at = :expiry, updated_at = :now"
            " WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'pending'"
        )

    @functools.cached_property
    def leased(self) -> str:
        """SQLite: the messages of a JSON array of ids leased by an owner, in one row:
        a JSON array of [id, channel, kind, key, payload length, attempts,
        created_at, after_id, group_key], and their payloads joined in the same order.
        Params: ``ids``, ``owner``."""
        return (
            'SELECT json_group_array(json_array(id, channel, kind, "key",'
            " length(CAST(payload AS BLOB)), attempts, created_at, after_id, group_key)),"
            f" CAST(group_concat(payload, '') AS BLOB) FROM {MESSAGE}"
            " WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'sending'"
            " AND lease_owner = :owner"
        )

    @functools.cached_property
    def leased_rows(self) -> str:
        """SQLite: the same, a row per message (when the joined payloads would be
        bigger than SQLite allows in one value). Params: ``ids``, ``owner``."""
        return (
            'SELECT id, channel, kind, "key", payload, attempts, created_at, after_id,'
            f" group_key FROM {MESSAGE} WHERE id IN (SELECT value FROM json_each(:ids))"
            " AND status = 'sending' AND lease_owner = :owner"
        )

    @functools.cached_property
    def lease_events(self) -> str:
        """SQLite: the 'sending' events of a claim. Params: ``owner``, ``now``, ``ids``."""
        return (
            f"INSERT INTO {EVENT} ({_EVENT_COLUMNS}) SELECT id, 'pending', 'sending', :owner,"
            " '{\"attempt\": ' || (attempts + 1) || '}', :now FROM "
            f"{MESSAGE} WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id"
        )

    @functools.cached_property
    def held_ids(self) -> str:
        """SQLite: which of a JSON array of ids an owner holds, as one JSON array.
        Params: ``ids``, ``owner``."""
        return (
            f"SELECT json_group_array(id) FROM {MESSAGE} WHERE id IN"
            " (SELECT value FROM json_each(:ids)) AND status = 'sending' AND lease_owner = :owner"
        )

    @functools.lru_cache(maxsize=64)  # noqa: B019
    def apply_outcomes(self, rows: int) -> str:
        """Write ``rows`` outcomes to messages still leased by the owner; on
        PostgreSQL returns (id, new status). Params on SQLite: updated_at, the
        rows (``OUTCOME_WIDTH`` each), owner; on PostgreSQL: the rows, updated_at,
        owner, then actor and at for the events it inserts too."""
        p, t = self.p, MESSAGE
        if self.postgres:
            first = "(" + ", ".join(f"CAST({p} AS {c})" for c in _OUTCOME_TYPES) + ")"
            values = ", ".join([first] + [self._row(OUTCOME_WIDTH)] * (rows - 1))
            source, col = "v", lambda i: "v." + _OUTCOME_NAMES[i]
            head = f"WITH v ({', '.join(_OUTCOME_NAMES)}) AS (VALUES {values}), upd AS ("
        else:
            values = ", ".join([self._row(OUTCOME_WIDTH)] * rows)
            source, col = f"(VALUES {values}) AS v", lambda i: f"v.column{i + 1}"
            head = ""
        update = (
            f"UPDATE {t} SET status = {col(1)}, attempts = {t}.attempts + {col(2)},"
            f" next_attempt_at = COALESCE({col(3)}, {t}.next_attempt_at),"
            f" last_error = COALESCE({col(4)}, {t}.last_error),"
            f" response = COALESCE({col(5)}, {t}.response),"
            f" sent_at = COALESCE({col(6)}, {t}.sent_at),"
            f" lease_owner = NULL, lease_expires_at = NULL, updated_at = {p}"
            f" FROM {source} WHERE {t}.id = {col(0)} AND {t}.status = 'sending'"
            f" AND {t}.lease_owner = {p}"
        )
        if not self.postgres:  # which rows it changes is read first, in one row (held_ids)
            return update
        return (
            f"{head}{update} RETURNING {t}.id, {t}.status),"
            f" ev AS (INSERT INTO {EVENT} ({_EVENT_COLUMNS})"
            f" SELECT upd.id, 'sending', upd.status, {p}, v.details, {p}"
            " FROM upd JOIN v ON v.id = upd.id) SELECT id, status FROM upd"
        )


_OUTCOME_NAMES = ("id", "status", "inc", "next_at", "error", "response", "sent_at", "details")
