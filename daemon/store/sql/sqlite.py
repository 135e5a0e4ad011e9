"""SQLite: every statement of the delivery path, by name.

One writer at a time: ``BEGIN IMMEDIATE`` takes the database's write lock, so
nothing changes between two statements of a unit of work and no row lock is
needed. Every statement below answers in one row, however many messages it
covers: Python's sqlite3 lets go of the interpreter lock for each row it steps
to, and a claim returning 100 rows would wait for the event loop's thread 100
times. Ids travel as JSON arrays (``json_each``). Named parameters are
``:name``; a statement with a row of values per message takes them in the order
of its column list.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import peewee as pw

from daemon.domain.errors import SchemaMismatch, StoreError, StoreUnavailable
from daemon.domain.statuses import DELIVERED, PENDING, SENDING
from daemon.store.db import unavailable_on_error
from daemon.store.sql.base import (
    BREAKER,
    BUCKET,
    EVENT,
    EVENT_COLUMNS,
    MESSAGE,
    MESSAGE_COLUMNS,
    MESSAGE_TEXT,
    MESSAGE_WIDTH,
    MINUTE_TALLY,
    OUTCOME_WIDTH,
    RUN,
    RUN_COLUMNS,
    RUN_WIDTH,
    TALLY,
    VISIT,
    ClaimedRow,
    Dialect,
    EventRow,
    NewRow,
    OutcomeRow,
    Q,
    Row,
    db_timestamp,
    read_timestamp,
)

_DELIVERED = "(" + ", ".join(f"'{status}'" for status in DELIVERED) + ")"
_UNFINISHED = f"('{PENDING}', '{SENDING}')"  # what an older message of a group may still be


def _row(width: int) -> str:
    return "(" + ", ".join(["?"] * width) + ")"


def _due(ordered: bool) -> str:
    in_order = (
        " AND (m.group_key IS NULL OR NOT EXISTS (SELECT 1 FROM outboxd_message o"
        " WHERE o.channel = m.channel AND o.group_key = m.group_key AND o.id < m.id"
        f" AND o.status IN {_UNFINISHED}))"
        if ordered
        else ""
    )
    return (
        f"SELECT m.id FROM {MESSAGE} m WHERE m.channel = :channel"
        " AND m.status = 'pending' AND m.next_attempt_at <= :now"
        " AND (m.after_id IS NULL OR EXISTS (SELECT 1"
        f" FROM {MESSAGE} a WHERE a.id = m.after_id AND a.status IN {_DELIVERED}))"
        f"{in_order} ORDER BY m.next_attempt_at, m.id LIMIT :limit"
    )


class SqliteDialect(Dialect):
    name = "sqlite"

    # --- schema ----------------------------------------------------------------------

    def statements(self, script: str) -> list[str]:
        out, lines = [], []
        for line in script.splitlines():
            lines.append(line)
            text = "\n".join(lines)
            if line.rstrip().endswith(";") and sqlite3.complete_statement(text):
                out.append(text.strip().rstrip(";"))
                lines = []
        if "\n".join(lines).strip():
            raise ValueError(f"a DDL script ends inside a statement: {lines[0]!r}")
        return out

    def require_features(self) -> None:
        """The JSON functions (``json_each``) the delivery path uses."""
        try:
            with unavailable_on_error(self.db):
                self.rows("SELECT json_each.value FROM json_each('[1]')")
        except StoreUnavailable as exc:
            if "json_each" not in str(exc):
                raise
            raise SchemaMismatch(
                f"this SQLite ({sqlite3.sqlite_version}) has no JSON functions ({exc}): "
                "outboxd needs SQLite 3.38 or newer, or one built with JSON1"
            ) from None

    # --- status events -------------------------------------------------------------

    INSERT_EVENTS = (  # one statement, one step, for many events
        f"INSERT INTO {EVENT} ({EVENT_COLUMNS}) SELECT "
        + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(5))
        + ", :at FROM json_each(:events)"
    )  # params: at, events (a JSON array of [message_id, from, to, actor, details])

    def insert_events(self, events: Sequence[EventRow], at: datetime) -> None:
        if events:
            table = json.dumps([e.values() for e in events])
            self.run(self.INSERT_EVENTS, {"at": db_timestamp(at), "events": table})

    # --- enqueue -------------------------------------------------------------------

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def insert_messages_sql(rows: int) -> str:
        """``rows`` messages, those whose (channel, key) is stored skipped;
        returns (id, channel, key) of those inserted."""
        values = ", ".join([_row(MESSAGE_WIDTH)] * rows)
        return (
            f"INSERT INTO {MESSAGE} ({MESSAGE_COLUMNS}) VALUES {values} "
            'ON CONFLICT (channel, "key") DO NOTHING RETURNING id, channel, "key"'
        )

    def insert_messages(self, rows: Sequence[NewRow], actor: str, stamp: str) -> list[Row]:
        values: list[Any] = []
        for channel, kind, key, payload, due, after, group, visit in rows:
            values += [channel, kind, key, payload, PENDING, 0, due, after, group, stamp, stamp]
            values.append(visit)
        inserted = self.rows(self.insert_messages_sql(len(rows)), values)
        if inserted:
            table = json.dumps([[r[0], None, PENDING, actor, None] for r in inserted])
            self.run(self.INSERT_EVENTS, {"at": stamp, "events": table})
        return inserted

    # --- claim: four statements of one row each -------------------------------------

    DUE_IDS = tuple(  # by ordered: the due ids as one JSON array; params: channel, now, limit
        f"SELECT json_group_array(id) FROM ({_due(ordered)})" for ordered in (False, True)
    )
    LEASE = (  # params: owner, expiry, now, ids
        f"UPDATE {MESSAGE} SET status = 'sending', lease_owner = :owner,"
        " lease_expires_at = :expiry, updated_at = :now"
        " WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'pending'"
    )
    LEASE_EVENTS = (  # params: owner, now, ids
        f"INSERT INTO {EVENT} ({EVENT_COLUMNS}) SELECT id, 'pending', 'sending', :owner,"
        " '{\"attempt\": ' || (attempts + 1) || '}', :now FROM "
        f"{MESSAGE} WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id"
    )
    LEASED = (  # one row: a JSON array of [id, channel, kind, key, payload length,
        # attempts, created_at, after_id, group_key], and the payloads joined in that
        # order; params: ids, owner
        'SELECT json_group_array(json_array(id, channel, kind, "key",'
        " length(CAST(payload AS BLOB)), attempts, created_at, after_id, group_key)),"
        f" CAST(group_concat(payload, '') AS BLOB) FROM {MESSAGE}"
        " WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'sending'"
        " AND lease_owner = :owner"
    )
    LEASED_ROWS = (  # the same, a row per message: when the payloads joined would be
        # bigger than SQLite allows in one value; params: ids, owner
        'SELECT id, channel, kind, "key", payload, attempts, created_at, after_id,'
        f" group_key FROM {MESSAGE} WHERE id IN (SELECT value FROM json_each(:ids))"
        " AND status = 'sending' AND lease_owner = :owner"
    )

    def claim(
        self, channel: str, owner: str, limit: int, stamp: str, expiry: str, ordered: bool
    ) -> list[ClaimedRow]:
        due = {"channel": channel, "now": stamp, "limit": limit}
        ids = self.one(self.DUE_IDS[ordered], due)[0]
        if ids == "[]":
            return []
        self.run(self.LEASE, {"owner": owner, "expiry": expiry, "now": stamp, "ids": ids})
        self.run(self.LEASE_EVENTS, {"owner": owner, "now": stamp, "ids": ids})
        leased = {"ids": ids, "owner": owner}
        try:
            table, joined = self.one(self.LEASED, leased)
        except pw.DataError:  # "string or blob too big": the payloads one by one
            return list(self.rows(self.LEASED_ROWS, leased))
        rows: list[ClaimedRow] = []
        at = 0
        for id_, channel_, kind, key, size, *rest in json.loads(table):
            rows.append((id_, channel_, kind, key, joined[at : at + size], *rest))
            at += size
        if at != len(joined):
            raise StoreError(f"claimed payloads do not add up ({at} of {len(joined)} bytes)")
        return rows

    # --- outcomes ------------------------------------------------------------------

    HELD_IDS = (  # which of a JSON array of ids an owner holds, as one JSON array
        f"SELECT json_group_array(id) FROM {MESSAGE} WHERE id IN"
        " (SELECT value FROM json_each(:ids)) AND status = 'sending' AND lease_owner = :owner"
    )

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def record_outcomes_sql(rows: int) -> str:
        """``rows`` outcomes written to the messages still leased by an owner.
        Params: updated_at, a row of ``OUTCOME_WIDTH`` per outcome, the owner."""
        values = ", ".join([_row(OUTCOME_WIDTH)] * rows)
        t = MESSAGE
        return (
            f"UPDATE {t} SET status = v.column2, attempts = {t}.attempts + v.column3,"
            f" next_attempt_at = COALESCE(v.column4, {t}.next_attempt_at),"
            f" last_error = COALESCE(v.column5, {t}.last_error),"
            f" response = COALESCE(v.column6, {t}.response),"
            f" sent_at = COALESCE(v.column7, {t}.sent_at),"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
            f" FROM (VALUES {values}) AS v WHERE {t}.id = v.column1 AND {t}.status = 'sending'"
            f" AND {t}.lease_owner = ?"
        )

    def record_outcomes(self, owner: str, rows: Sequence[OutcomeRow], stamp: str) -> dict[int, str]:
        # which rows are still held, read first in one row: the write lock is held
        # from BEGIN, so nothing changes before the update
        ids = json.dumps([row[0] for row in rows])
        held = set(json.loads(self.one(self.HELD_IDS, {"ids": ids, "owner": owner})[0]))
        if not held:
            return {}
        params: list[Any] = [stamp]
        for row in rows:
            params += row
        params.append(owner)
        self.run(self.record_outcomes_sql(len(rows)), params)
        recorded = {row[0]: row[1] for row in rows if row[0] in held}
        events = [[r[0], SENDING, r[1], owner, r[7]] for r in sorted(rows) if r[0] in held]
        self.run(self.INSERT_EVENTS, {"at": stamp, "events": json.dumps(events)})
        return recorded

    # --- leases --------------------------------------------------------------------

    RENEW_LEASES = (  # params: until, now, ids, owner
        f"UPDATE {MESSAGE} SET lease_expires_at = :until, updated_at = :now"
        " WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'sending'"
        " AND lease_owner = :owner RETURNING id"
    )
    STALE_LEASES = (  # params: now, limit
        f"SELECT id, lease_owner, lease_expires_at FROM {MESSAGE}"
        " WHERE status = 'sending' AND lease_expires_at < :now"
        " ORDER BY lease_expires_at LIMIT :limit"
    )
    RELEASE_LEASES = (  # params: now, ids
        f"UPDATE {MESSAGE} SET status = 'pending', lease_owner = NULL,"
        " lease_expires_at = NULL, updated_at = :now"
        " WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'sending' RETURNING id"
    )

    def renew_leases(self, owner: str, ids: Sequence[int], until: str, stamp: str) -> list[int]:
        params = {"until": until, "now": stamp, "ids": json.dumps(list(ids)), "owner": owner}
        return [row[0] for row in self.rows(self.RENEW_LEASES, params)]

    def stale_leases(self, stamp: str, limit: int) -> list[tuple[int, str, datetime]]:
        rows = self.rows(self.STALE_LEASES, {"now": stamp, "limit": limit})
        return [(id_, owner, read_timestamp(at)) for id_, owner, at in rows]

    def release_leases(self, ids: Sequence[int], stamp: str) -> list[int]:
        params = {"now": stamp, "ids": json.dumps(list(ids))}
        return [row[0] for row in self.rows(self.RELEASE_LEASES, params)]

    # --- rate limits ---------------------------------------------------------------

    LOCKED_BUCKET = f"SELECT tokens, updated_at FROM {BUCKET} WHERE channel = :channel"
    CREATE_BUCKET = (  # params: channel, tokens, at
        f"INSERT INTO {BUCKET} (channel, tokens, updated_at) VALUES (:channel, :tokens, :at)"
        " ON CONFLICT (channel) DO NOTHING"
    )
    SAVE_BUCKET = f"UPDATE {BUCKET} SET tokens = :tokens, updated_at = :at WHERE channel = :channel"

    def locked_bucket(self, channel: str) -> tuple[float, datetime] | None:
        rows = self.rows(self.LOCKED_BUCKET, {"channel": channel})
        return (float(rows[0][0]), read_timestamp(rows[0][1])) if rows else None

    def create_bucket(self, channel: str, tokens: float, stamp: str) -> None:
        self.run(self.CREATE_BUCKET, {"channel": channel, "tokens": tokens, "at": stamp})

    def save_bucket(self, channel: str, tokens: float, stamp: str) -> None:
        self.run(self.SAVE_BUCKET, {"channel": channel, "tokens": tokens, "at": stamp})

    # --- a delivery's progress on its visit ------------------------------------------

    MESSAGE_VISITS = (  # one row: a JSON object message id -> visit id; params: ids
        f"SELECT json_group_object(id, visit_id) FROM {MESSAGE}"
        " WHERE id IN (SELECT value FROM json_each(:ids)) AND visit_id IS NOT NULL"
    )
    VISIT_PROGRESS = (  # one row: a JSON object visit id -> progress text; params: ids
        f"SELECT json_group_object(id, task_progress) FROM {VISIT}"
        " WHERE id IN (SELECT value FROM json_each(:ids))"
    )
    SAVE_PROGRESS = f"UPDATE {VISIT} SET task_progress = :progress, updated_at = :at WHERE id = :id"

    def message_visits(self, ids: Sequence[int]) -> dict[int, int]:
        found = self.one(self.MESSAGE_VISITS, {"ids": json.dumps(list(ids))})[0]
        return {int(k): int(v) for k, v in json.loads(found).items()}

    def locked_progress(self, visit_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        found = self.one(self.VISIT_PROGRESS, {"ids": json.dumps(list(visit_ids))})[0]
        return {int(k): json.loads(v) for k, v in json.loads(found).items()}

    def save_progress(self, visit_id: int, progress: dict[str, Any], stamp: str) -> None:
        text = json.dumps(progress, sort_keys=True, default=str)
        self.run(self.SAVE_PROGRESS, {"progress": text, "at": stamp, "id": visit_id})

    # --- breakers --------------------------------------------------------------------

    REPORT_BREAKER = (  # params: channel, owner, state, detail, at
        f"INSERT INTO {BREAKER} (channel, owner, state, since, detail, updated_at)"
        " VALUES (:channel, :owner, :state, :at, :detail, :at)"
        " ON CONFLICT (channel, owner) DO UPDATE SET"
        f" since = CASE WHEN {BREAKER}.state = excluded.state THEN {BREAKER}.since"
        " ELSE excluded.since END,"
        " state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at"
    )
    CLEAR_BREAKER = f"DELETE FROM {BREAKER} WHERE channel = :channel AND owner = :owner"

    def report_breaker(
        self, channel: str, owner: str, state: str, detail: str | None, stamp: str
    ) -> None:
        params = {"channel": channel, "owner": owner, "state": state, "detail": detail}
        self.run(self.REPORT_BREAKER, {**params, "at": stamp})

    def clear_breaker(self, channel: str, owner: str) -> None:
        self.run(self.CLEAR_BREAKER, {"channel": channel, "owner": owner})

    # --- tallies: one row per key already, updated in place by the triggers -----------

    DROP_OLD_MINUTES = f"DELETE FROM {MINUTE_TALLY} WHERE minute < :old"
    DROP_ZERO_TALLIES = f"DELETE FROM {TALLY} WHERE n = 0"

    def fold_tallies(self, old: str, recent: str, at_least: int) -> int:
        return self.run(self.DROP_OLD_MINUTES, {"old": old}) + self.run(self.DROP_ZERO_TALLIES)

    def notify(self, channels: Iterable[str]) -> None:
        """No such statement: the unit of work rings the doorbell once the
        transaction has committed (``daemon.store.doorbell``)."""

    # --- the rest --------------------------------------------------------------------

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a few sizes
    def insert_runs(self, rows: int) -> str:
        values = ", ".join([_row(RUN_WIDTH)] * rows)
        return (
            f"INSERT INTO {RUN} ({RUN_COLUMNS}) VALUES {values} "
            "ON CONFLICT (schedule_id, fire_time, attempt) DO NOTHING "
            "RETURNING id, schedule_id, fire_time, attempt"
        )

    def for_update(self, query: Q) -> Q:
        return query

    def skip_locked(self, query: Q) -> Q:
        return query

    def exclusive(self, key: int) -> None:
        """BEGIN IMMEDIATE did it: one writer at a time."""

    def try_exclusive(self, key: int) -> bool:
        return True

    def key_prefix(self, field: pw.Field, prefix: str) -> pw.ColumnBase:
        """The byte-order range [prefix, prefix with its last character the next
        one), which the unique (channel, key) index serves."""
        exact = pw.fn.substr(field, 1, len(prefix)) == prefix
        following = ord(prefix[-1]) + 1
        if following > 0x10FFFF or 0xD800 <= following <= 0xDFFF:
            return exact
        return (field >= prefix) & (field < prefix[:-1] + chr(following)) & exact

    # --- content search --------------------------------------------------------------

    @staticmethod
    def _phrase(text: str) -> str:
        """``text`` as one FTS5 phrase: with the trigram tokenizer, the payloads
        holding it anywhere, in any case."""
        return '"' + text.replace('"', '""') + '"'

    def text_index_rows(self) -> int:
        return int(self.one(f"SELECT count(*) FROM {MESSAGE_TEXT}_data")[0])

    def compact_text_index(self, pages: int) -> int:
        """FTS5 keeps a deleted payload's entries (and the marker that deletes them)
        until the segments holding them are merged, and its automatic merges may not
        reach the oldest, largest segment for a long time: under a steady purge the
        index grows while the table does not. A merge with a negative page count
        merges whatever segments there are, about that many pages at a time."""
        connection = self.db.connection()
        before = connection.total_changes
        self.run(
            f"INSERT INTO {MESSAGE_TEXT} ({MESSAGE_TEXT}, rank) VALUES ('merge', ?)",
            (-max(1, pages),),
        )
        return int(connection.total_changes - before)

    def text_match(self, message: type[pw.Model], text: str) -> pw.ColumnBase:
        index, rowid, chosen = self._text_index(text)
        matches = index.select(rowid).where(chosen)
        return message.id.in_(matches)  # type: ignore[attr-defined]

    def text_source(self, text: str) -> tuple[pw.Table, pw.ColumnBase, pw.ColumnBase] | None:
        """The FTS5 table itself: it hands its matches out by rowid (the message's
        id), newest first, without reading them all."""
        return self._text_index(text)

    def _text_index(self, text: str) -> tuple[pw.Table, pw.ColumnBase, pw.ColumnBase]:
        index = pw.Table(MESSAGE_TEXT, ("rowid", "payload"))
        rowid, payload = pw.Column(index, "rowid"), pw.Column(index, "payload")
        return index, rowid, pw.NodeList((payload, pw.SQL("MATCH"), self._phrase(text)))
