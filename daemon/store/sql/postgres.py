"""PostgreSQL: every statement of the delivery path, by name.

Several writers at once: a claim locks the rows it takes (``FOR UPDATE SKIP
LOCKED``), a bucket or a visit is locked for the transaction that changes it.
A status event is written in the statement that changes its message (a
data-modifying CTE: one round trip). Statements of a fixed shape take named
parameters (``%(name)s``) and arrays rather than a list of values, so psycopg
prepares each once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import peewee as pw

from daemon.domain.statuses import DELIVERED, PENDING, SENDING
from daemon.store.sql.base import (
    BREAKER,
    BUCKET,
    EVENT,
    EVENT_COLUMNS,
    MESSAGE,
    MESSAGE_COLUMNS,
    MESSAGE_TEXT,
    MINUTE_TALLY,
    NOTIFY_CHANNEL,
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
_OUTCOME_NAMES = ("id", "status", "inc", "next_at", "error", "response", "sent_at", "details")
_OUTCOME_TYPES = (
    "BIGINT", "VARCHAR(16)", "INTEGER", "TIMESTAMP", "TEXT", "TEXT", "TIMESTAMP", "TEXT",
)  # fmt: skip
_FOLD_LOCK = 0x74616C6C79  # pg_try_advisory_xact_lock key: "tally"


def _row(width: int) -> str:
    return "(" + ", ".join(["%s"] * width) + ")"


def _claim(ordered: bool) -> str:
    in_order = (
        " AND (m.group_key IS NULL OR NOT EXISTS (SELECT 1 FROM outboxd_message o"
        " WHERE o.channel = m.channel AND o.group_key = m.group_key AND o.id < m.id"
        f" AND o.status IN {_UNFINISHED}))"
        if ordered
        else ""
    )
    due = (
        f"SELECT m.id FROM {MESSAGE} m WHERE m.channel = %(channel)s"
        " AND m.status = 'pending' AND m.next_attempt_at <= %(now)s"
        " AND (m.after_id IS NULL OR EXISTS (SELECT 1"
        f" FROM {MESSAGE} a WHERE a.id = m.after_id AND a.status IN {_DELIVERED}))"
        f"{in_order} ORDER BY m.next_attempt_at, m.id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    )
    t = MESSAGE
    update = (
        f"UPDATE {t} SET status = 'sending', lease_owner = %(owner)s,"
        f" lease_expires_at = %(expiry)s, updated_at = %(now)s"
        f" FROM due WHERE {t}.id = due.id AND {t}.status = 'pending'"
        f' RETURNING {t}.id, {t}.channel, {t}.kind, {t}."key", {t}.payload, {t}.attempts,'
        f" {t}.created_at, {t}.after_id, {t}.group_key"
    )
    details = "'{\"attempt\": ' || (attempts + 1) || '}'"
    # Materialized, so the rows are chosen once: as IN (subquery), PostgreSQL may
    # rescan it per row and lease far past the limit.
    return (
        f"WITH due AS MATERIALIZED ({due}), claimed AS ({update}),"
        f" ev AS (INSERT INTO {EVENT} ({EVENT_COLUMNS}) SELECT id, 'pending', 'sending',"
        f" %(owner)s, {details}, %(now)s FROM claimed) SELECT * FROM claimed"
    )


class PostgresDialect(Dialect):
    name = "postgres"

    # --- schema ----------------------------------------------------------------------

    def statements(self, script: str) -> list[str]:
        """Split at a line ending in ``;`` outside a ``$$`` body."""
        out, lines = [], []
        for line in script.splitlines():
            lines.append(line)
            text = "\n".join(lines)
            if line.rstrip().endswith(";") and text.count("$$") % 2 == 0:
                out.append(text.strip().rstrip(";"))
                lines = []
        if "\n".join(lines).strip():
            raise ValueError(f"a DDL script ends inside a statement: {lines[0]!r}")
        return out

    def require_features(self) -> None:
        """Anything PostgreSQL 11 or newer has."""

    # --- status events -------------------------------------------------------------

    INSERT_EVENT = f"INSERT INTO {EVENT} ({EVENT_COLUMNS}) VALUES {_row(6)}"  # executemany

    def insert_events(self, events: Sequence[EventRow], at: datetime) -> None:
        if events:
            stamp = db_timestamp(at)
            self.many(self.INSERT_EVENT, [(*e.values(), stamp) for e in events])

    # --- enqueue -------------------------------------------------------------------

    # Any number of messages in one statement of fixed shape: one array per varying
    # column (unnested in order, so ids follow the batch), and the creation events.
    # psycopg converts it once, where a VALUES list of 500 rows (6,000 placeholders)
    # is parsed again at every call. Params: status, at, actor and the arrays
    # channel, kind, key, payload, due, after, group, visit.
    ARRAYS = (
        ("channel", "varchar"), ("kind", "varchar"), ("key", "varchar"), ("payload", "bytea"),
        ("due", "timestamp"), ("after", "bigint"), ("group", "varchar"), ("visit", "bigint"),
    )  # fmt: skip
    INSERT_MESSAGES = (
        f"WITH ins AS (INSERT INTO {MESSAGE} ({MESSAGE_COLUMNS}) "
        "SELECT u.channel, u.kind, u.key, u.payload, %(status)s, 0, u.due, u.after_id, "
        "u.group_key, %(at)s, %(at)s, u.visit_id FROM unnest("
        + ", ".join(f"%({name})s::{kind}[]" for name, kind in ARRAYS)
        + ") WITH ORDINALITY AS u(channel, kind, key, payload, due, after_id, group_key, "
        'visit_id, n) ORDER BY u.n ON CONFLICT (channel, "key") DO NOTHING '
        'RETURNING id, channel, "key"), '
        f"ev AS (INSERT INTO {EVENT} ({EVENT_COLUMNS}) "
        "SELECT id, NULL, %(status)s, %(actor)s, NULL, %(at)s FROM ins) "
        'SELECT id, channel, "key" FROM ins'
    )

    def insert_messages(self, rows: Sequence[NewRow], actor: str, stamp: str) -> list[Row]:
        columns = zip(*rows, strict=True)
        arrays = {name: list(c) for (name, _), c in zip(self.ARRAYS, columns, strict=True)}
        return self.rows(
            self.INSERT_MESSAGES, {"status": PENDING, "at": stamp, "actor": actor, **arrays}
        )

    # --- claim: one statement, the events included -----------------------------------

    CLAIM = (_claim(False), _claim(True))  # by ordered; params: channel, now, limit, owner, expiry

    def claim(
        self, channel: str, owner: str, limit: int, stamp: str, expiry: str, ordered: bool
    ) -> list[ClaimedRow]:
        params = {"channel": channel, "now": stamp, "limit": limit, "owner": owner}
        return list(self.rows(self.CLAIM[ordered], {**params, "expiry": expiry}))

    # --- outcomes: one statement, the events included -------------------------------

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def record_outcomes_sql(rows: int) -> str:
        """``rows`` outcomes written to the messages still leased by an owner, with
        their events; returns (id, new status). Params: a row of ``OUTCOME_WIDTH``
        per outcome, updated_at, owner, then actor and at of the events."""
        t = MESSAGE
        first = "(" + ", ".join(f"CAST(%s AS {c})" for c in _OUTCOME_TYPES) + ")"
        values = ", ".join([first] + [_row(OUTCOME_WIDTH)] * (rows - 1))
        return (
            f"WITH v ({', '.join(_OUTCOME_NAMES)}) AS (VALUES {values}), upd AS ("
            f"UPDATE {t} SET status = v.status, attempts = {t}.attempts + v.inc,"
            f" next_attempt_at = COALESCE(v.next_at, {t}.next_attempt_at),"
            f" last_error = COALESCE(v.error, {t}.last_error),"
            f" response = COALESCE(v.response, {t}.response),"
            f" sent_at = COALESCE(v.sent_at, {t}.sent_at),"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = %s"
            f" FROM v WHERE {t}.id = v.id AND {t}.status = 'sending' AND {t}.lease_owner = %s"
            f" RETURNING {t}.id, {t}.status),"
            f" ev AS (INSERT INTO {EVENT} ({EVENT_COLUMNS})"
            " SELECT upd.id, 'sending', upd.status, %s, v.details, %s"
            " FROM upd JOIN v ON v.id = upd.id) SELECT id, status FROM upd"
        )

    def record_outcomes(self, owner: str, rows: Sequence[OutcomeRow], stamp: str) -> dict[int, str]:
        params: list[Any] = []
        for row in rows:
            params += row
        params += [stamp, owner, owner, stamp]
        result = self.rows(self.record_outcomes_sql(len(rows)), params)
        return {int(i): s for i, s in result}

    # --- leases --------------------------------------------------------------------

    RENEW_LEASES = (  # params: until, now, ids, owner
        f"UPDATE {MESSAGE} SET lease_expires_at = %(until)s, updated_at = %(now)s"
        " WHERE id = ANY(%(ids)s::bigint[]) AND status = 'sending'"
        " AND lease_owner = %(owner)s RETURNING id"
    )
    STALE_LEASES = (  # params: now, limit
        f"SELECT id, lease_owner, lease_expires_at FROM {MESSAGE}"
        " WHERE status = 'sending' AND lease_expires_at < %(now)s"
        " ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    )
    RELEASE_LEASES = (  # params: now, ids
        f"UPDATE {MESSAGE} SET status = 'pending', lease_owner = NULL,"
        " lease_expires_at = NULL, updated_at = %(now)s"
        " WHERE id = ANY(%(ids)s::bigint[]) AND status = 'sending' RETURNING id"
    )

    def renew_leases(self, owner: str, ids: Sequence[int], until: str, stamp: str) -> list[int]:
        params = {"until": until, "now": stamp, "ids": list(ids), "owner": owner}
        return [row[0] for row in self.rows(self.RENEW_LEASES, params)]

    def stale_leases(self, stamp: str, limit: int) -> list[tuple[int, str, datetime]]:
        rows = self.rows(self.STALE_LEASES, {"now": stamp, "limit": limit})
        return [(id_, owner, read_timestamp(at)) for id_, owner, at in rows]

    def release_leases(self, ids: Sequence[int], stamp: str) -> list[int]:
        released = self.rows(self.RELEASE_LEASES, {"now": stamp, "ids": list(ids)})
        return [row[0] for row in released]

    # --- rate limits ---------------------------------------------------------------

    LOCKED_BUCKET = (
        f"SELECT tokens, updated_at FROM {BUCKET} WHERE channel = %(channel)s FOR UPDATE"
    )
    CREATE_BUCKET = (  # params: channel, tokens, at
        f"INSERT INTO {BUCKET} (channel, tokens, updated_at)"
        " VALUES (%(channel)s, %(tokens)s, %(at)s) ON CONFLICT (channel) DO NOTHING"
    )
    SAVE_BUCKET = (
        f"UPDATE {BUCKET} SET tokens = %(tokens)s, updated_at = %(at)s WHERE channel = %(channel)s"
    )

    def locked_bucket(self, channel: str) -> tuple[float, datetime] | None:
        rows = self.rows(self.LOCKED_BUCKET, {"channel": channel})
        return (float(rows[0][0]), read_timestamp(rows[0][1])) if rows else None

    def create_bucket(self, channel: str, tokens: float, stamp: str) -> None:
        self.run(self.CREATE_BUCKET, {"channel": channel, "tokens": tokens, "at": stamp})

    def save_bucket(self, channel: str, tokens: float, stamp: str) -> None:
        self.run(self.SAVE_BUCKET, {"channel": channel, "tokens": tokens, "at": stamp})

    # --- a delivery's progress on its visit ------------------------------------------

    MESSAGE_VISITS = (  # params: ids
        f"SELECT id, visit_id FROM {MESSAGE}"
        " WHERE id = ANY(%(ids)s::bigint[]) AND visit_id IS NOT NULL"
    )
    VISIT_PROGRESS = (  # params: ids
        f"SELECT id, task_progress FROM {VISIT} WHERE id = ANY(%(ids)s::bigint[])"
        " ORDER BY id FOR UPDATE"
    )
    SAVE_PROGRESS = (
        f"UPDATE {VISIT} SET task_progress = %(progress)s, updated_at = %(at)s WHERE id = %(id)s"
    )

    def message_visits(self, ids: Sequence[int]) -> dict[int, int]:
        return {int(i): int(v) for i, v in self.rows(self.MESSAGE_VISITS, {"ids": list(ids)})}

    def locked_progress(self, visit_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        rows = self.rows(self.VISIT_PROGRESS, {"ids": list(visit_ids)})
        return {int(i): json.loads(text) for i, text in rows}

    def save_progress(self, visit_id: int, progress: dict[str, Any], stamp: str) -> None:
        text = json.dumps(progress, sort_keys=True, default=str)
        self.run(self.SAVE_PROGRESS, {"progress": text, "at": stamp, "id": visit_id})

    # --- breakers --------------------------------------------------------------------

    REPORT_BREAKER = (  # params: channel, owner, state, detail, at
        f"INSERT INTO {BREAKER} (channel, owner, state, since, detail, updated_at)"
        " VALUES (%(channel)s, %(owner)s, %(state)s, %(at)s, %(detail)s, %(at)s)"
        " ON CONFLICT (channel, owner) DO UPDATE SET"
        f" since = CASE WHEN {BREAKER}.state = excluded.state THEN {BREAKER}.since"
        " ELSE excluded.since END,"
        " state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at"
    )
    CLEAR_BREAKER = f"DELETE FROM {BREAKER} WHERE channel = %(channel)s AND owner = %(owner)s"

    def report_breaker(
        self, channel: str, owner: str, state: str, detail: str | None, stamp: str
    ) -> None:
        params = {"channel": channel, "owner": owner, "state": state, "detail": detail}
        self.run(self.REPORT_BREAKER, {**params, "at": stamp})

    def clear_breaker(self, channel: str, owner: str) -> None:
        self.run(self.CLEAR_BREAKER, {"channel": channel, "owner": owner})

    # --- tallies: every writing statement appends its net change as rows -------------

    DROP_OLD_MINUTES = f"DELETE FROM {MINUTE_TALLY} WHERE minute < %(old)s"
    FOLD_LOCK = "SELECT pg_try_advisory_xact_lock(%(key)s)"  # one folder at a time
    TALLY_ROWS = (  # params: recent
        f"SELECT (SELECT count(*) FROM {TALLY})"
        f" + (SELECT count(*) FROM {MINUTE_TALLY} WHERE minute >= %(recent)s)"
    )
    FOLD_COUNTS = (
        f"WITH gone AS (DELETE FROM {TALLY} RETURNING channel, status, n) "
        f"INSERT INTO {TALLY} (channel, status, n) "
        "SELECT channel, status, SUM(n) FROM gone GROUP BY channel, status HAVING SUM(n) <> 0"
    )
    FOLD_MINUTES = (  # the recent minutes: changes are written to the current one
        f"WITH gone AS (DELETE FROM {MINUTE_TALLY} WHERE minute >= %(recent)s "
        "RETURNING channel, minute, status, n) "
        f"INSERT INTO {MINUTE_TALLY} (channel, minute, status, n) "
        "SELECT channel, minute, status, SUM(n) FROM gone GROUP BY channel, minute, status"
    )

    def fold_tallies(self, old: str, recent: str, at_least: int) -> int:
        removed = self.run(self.DROP_OLD_MINUTES, {"old": old})
        if not self.try_exclusive(_FOLD_LOCK):
            return removed
        before = int(self.one(self.TALLY_ROWS, {"recent": recent})[0])
        if before <= at_least:
            return removed
        self.run(self.FOLD_COUNTS)
        self.run(self.FOLD_MINUTES, {"recent": recent})
        return removed + before - int(self.one(self.TALLY_ROWS, {"recent": recent})[0])

    NOTIFY = "SELECT pg_notify(%s, %s)"

    def notify(self, channels: Iterable[str]) -> None:
        for channel in sorted(set(channels)):
            self.rows(self.NOTIFY, (NOTIFY_CHANNEL, channel))

    def listen_conninfo(self) -> dict[str, Any] | None:
        """psycopg's parameters for a connection of the listener's own."""
        return {"dbname": self.db.database, **self.db.connect_params}

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
        return query.for_update()

    def skip_locked(self, query: Q) -> Q:
        return query.for_update(skip_locked=True)

    def exclusive(self, key: int) -> None:
        self.rows("SELECT pg_advisory_xact_lock(%s)", (key,))

    def try_exclusive(self, key: int) -> bool:
        return bool(self.one(self.FOLD_LOCK, {"key": key})[0])

    def key_prefix(self, field: pw.Field, prefix: str) -> pw.ColumnBase:
        """LIKE, served by the (channel, key varchar_pattern_ops) index."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return pw.Expression(field, "LIKE", escaped + "%")

    # --- content search --------------------------------------------------------------

    def text_match(self, message: type[pw.Model], text: str) -> pw.ColumnBase:
        """ILIKE on each payload's bytes as Latin-1 text (``outboxd_message_text``,
        the table the GIN trigram index is on), the search's text turned the same
        way: any payload reads, and letters beyond ASCII match as written (their
        case not folded)."""
        as_bytes = text.encode("utf-8").decode("latin-1")
        escaped = as_bytes.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        texts = pw.Table(MESSAGE_TEXT, ("message_id", "body"))
        body = pw.Column(texts, "body")
        found = texts.select(pw.Column(texts, "message_id")).where(
            pw.Expression(body, "ILIKE", f"%{escaped}%")
        )
        return message.id.in_(found)  # type: ignore[attr-defined]
