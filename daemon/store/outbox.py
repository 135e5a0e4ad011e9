"""Outbox operations on the delivery path: enqueue, claim, record outcomes, leases."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from daemon.resilience.backoff import RetryPolicy
from daemon.store.base import EventRow, StoreBase, chunked, literal
from daemon.store.models import (
    DELIVERED_STATUSES,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    Message,
    db_timestamp,
)
from daemon.store.types import (
    ClaimedMessage,
    Delivered,
    EnqueueResult,
    Failed,
    InvalidMessage,
    NewMessage,
    Outcome,
    RecordResult,
    Released,
    RetryLater,
    UnknownPrerequisite,
)

DEFAULT_POLICY = RetryPolicy()
_LIMITS = {"channel": 64, "key": 255, "kind": 64}


def _check(message: NewMessage) -> NewMessage:
    for name, limit in _LIMITS.items():
        value = getattr(message, name)
        if not isinstance(value, str) or not value:
            raise InvalidMessage(f"{name} must be a non-empty string")
        if len(value) > limit:
            raise InvalidMessage(f"{name} is longer than {limit} characters")
    if isinstance(message.payload, str):
        raise InvalidMessage("payload must be bytes (encode text first)")
    if message.after_key is not None and message.after_key == message.key:
        raise InvalidMessage(f"message {message.key!r} cannot be its own prerequisite")
    return message


class OutboxOps(StoreBase):
    # --- enqueue ------------------------------------------------------------------

    def enqueue(
        self, message: NewMessage, actor: str = "enqueue", now: datetime | None = None
    ) -> EnqueueResult:
        return self.enqueue_many([message], actor=actor, now=now)[0]

    def enqueue_many(
        self, messages: Sequence[NewMessage], actor: str = "enqueue", now: datetime | None = None
    ) -> list[EnqueueResult]:
        """Store messages in one transaction, in order. A ``(channel, key)`` that
        already exists is not stored again: its existing row is returned with
        ``created=False``. A prerequisite may be an earlier message of the batch."""
        batch = [_check(m) for m in messages]
        when = self._now(now)
        return self._write(lambda: self._enqueue(batch, actor, when)) if batch else []

    def _enqueue(self, batch: list[NewMessage], actor: str, now: datetime) -> list[EnqueueResult]:
        ids: dict[tuple[str, str], int] = self._ids_by_key(
            {(m.channel, m.after_key) for m in batch if m.after_key}
        )
        self._check_ids_exist({m.after_id for m in batch if m.after_id is not None})
        created: dict[tuple[str, str], int] = {}
        for chunk in chunked(batch):
            rows = [
                {
                    "channel": m.channel,
                    "kind": m.kind,
                    "key": m.key,
                    "payload": m.payload,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": max(m.not_before or now, now),
                    "after": m.after_id
                    if m.after_id is not None
                    else ids.get((m.channel, m.after_key or "")),
                    "created_at": now,
                    "updated_at": now,
                }
                for m in chunk
            ]
            query = (
                Message.insert_many(rows)
                .on_conflict(conflict_target=[Message.channel, Message.key], action="IGNORE")
                .returning(Message.id, Message.channel, Message.key)
            )
            for row in query.tuples().execute():
                created[(row[1], row[2])] = row[0]
        ids.update(created)
        self._link_batch_prerequisites(batch, created, ids)
        existing = self._rows_by_key(
            {(m.channel, m.key) for m in batch if (m.channel, m.key) not in created}
        )
        self._add_events([EventRow(i, None, PENDING, actor) for i in sorted(created.values())], now)
        results = []
        reported: set[tuple[str, str]] = set()
        for m in batch:
            pair = (m.channel, m.key)
            if pair in created:
                results.append(EnqueueResult(created[pair], pair not in reported, PENDING))
                reported.add(pair)
            else:
                found_id, status = existing[pair]
                results.append(EnqueueResult(found_id, False, status))
        return results

    def _link_batch_prerequisites(
        self,
        batch: list[NewMessage],
        created: Mapping[tuple[str, str], int],
        ids: Mapping[tuple[str, str], int],
    ) -> None:
        """Set ``after`` on new rows whose prerequisite came in the same batch."""
        for m in batch:
            if not m.after_key or m.after_id is not None:
                continue
            target = ids.get((m.channel, m.after_key))
            if target is None:
                raise UnknownPrerequisite(
                    f"prerequisite {m.after_key!r} of {m.key!r} does not exist "
                    f"in channel {m.channel!r}"
                )
            own = created.get((m.channel, m.key))
            if own is not None:
                Message.update(after=target).where(
                    (Message.id == own) & Message.after.is_null()
                ).execute()

    def _ids_by_key(self, pairs: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str], int]:
        return {pair: row[0] for pair, row in self._rows_by_key(pairs).items()}

    def _rows_by_key(
        self, pairs: Iterable[tuple[str, str | None]]
    ) -> dict[tuple[str, str], tuple[int, str]]:
        by_channel: dict[str, list[str]] = {}
        for channel, key in pairs:
            if key is not None:
                by_channel.setdefault(channel, []).append(key)
        found: dict[tuple[str, str], tuple[int, str]] = {}
        for channel, keys in by_channel.items():
            for chunk in chunked(sorted(set(keys))):
                query = Message.select(Message.id, Message.key, Message.status).where(
                    (Message.channel == channel) & Message.key.in_(list(chunk))
                )
                for id_, key, status in query.tuples():
                    found[(channel, key)] = (id_, status)
        return found

    def _check_ids_exist(self, ids: set[int]) -> None:
        if not ids:
            return
        present = {
            r[0] for r in Message.select(Message.id).where(Message.id.in_(list(ids))).tuples()
        }
        missing = sorted(ids - present)
        if missing:
            raise UnknownPrerequisite(f"prerequisite message id {missing[0]} does not exist")

    # --- claim --------------------------------------------------------------------

    def claim(
        self,
        channels: Sequence[str],
        owner: str,
        limit: int,
        lease: float,
        now: datetime | None = None,
    ) -> list[ClaimedMessage]:
        """Lease up to ``limit`` due messages of ``channels`` to ``owner`` for
        ``lease`` seconds: oldest due first, prerequisites sent, each message
        held by one owner at a time. Channels are filled in the order given."""
        when = self._now(now)
        until = when + timedelta(seconds=lease)

        def work() -> list[ClaimedMessage]:
            claimed: list[ClaimedMessage] = []
            for channel in channels:
                room = limit - len(claimed)
                if room <= 0:
                    break
                claimed += self._claim_channel(channel, owner, room, when, until)
            self._add_events(
                [
                    EventRow(m.id, PENDING, SENDING, owner, {"attempt": m.attempts + 1})
                    for m in claimed
                ],
                when,
            )
            return claimed

        return self._write(work) if limit > 0 else []

    def _claim_channel(
        self, channel: str, owner: str, limit: int, now: datetime, until: datetime
    ) -> list[ClaimedMessage]:
        prereq = Message.alias("prereq")
        met = pw.fn.EXISTS(
            prereq.select(pw.SQL("1")).where(
                (prereq.id == Message.after) & prereq.status.in_(DELIVERED_STATUSES)
            )
        )
        due = (
            Message.select(Message.id)
            .where(
                (Message.channel == channel)
                & (Message.status == literal(PENDING))
                & (Message.next_attempt_at <= now)
                & (Message.after.is_null() | met)
            )
            .order_by(Message.next_attempt_at, Message.id)
            .limit(limit)
        )
        if self.postgres:
            due = due.for_update(skip_locked=True)
        # Materialized, so the chosen rows are picked once: as an IN (subquery),
        # PostgreSQL may rescan the subquery per row and lease past the limit.
        chosen = due.cte("due", materialized=True)
        query = (
            Message.update(
                status=SENDING, lease_owner=owner, lease_expires_at=until, updated_at=now
            )
            .with_cte(chosen)
            .from_(chosen)
            .where((Message.id == chosen.c.id) & (Message.status == PENDING))
            .returning(
                Message.id,
                Message.channel,
                Message.kind,
                Message.key,
                Message.payload,
                Message.attempts,
                Message.created_at,
                Message.after,
            )
        )
        claimed = [
            ClaimedMessage(
                id=row.id,
                channel=row.channel,
                kind=row.kind,
                key=row.key,
                payload=bytes(row.payload),
                attempts=row.attempts,
                created_at=row.created_at,
                lease_expires_at=until,
                after_id=row.after_id,
            )
            for row in query.execute()
        ]
        claimed.sort(key=lambda m: m.id)
        return claimed

    # --- outcomes -----------------------------------------------------------------

    def record(
        self,
        owner: str,
        outcomes: Sequence[Outcome],
        policies: Mapping[str, RetryPolicy] | None = None,
        now: datetime | None = None,
        rand: Callable[[], float] = random.random,
    ) -> RecordResult:
        """Write the outcomes of attempts ``owner`` made, with their status events,
        in one transaction. Only messages ``owner`` still holds are changed; a
        retry gives up (→ failed) when the channel's policy says so."""
        when = self._now(now)
        return self._write(lambda: self._record(owner, outcomes, policies or {}, when, rand))

    def _record(
        self,
        owner: str,
        outcomes: Sequence[Outcome],
        policies: Mapping[str, RetryPolicy],
        now: datetime,
        rand: Callable[[], float],
    ) -> RecordResult:
        held = self._held(owner, [o.id for o in outcomes if isinstance(o, RetryLater)])
        # (id, status, attempts added, next attempt, error, response, sent at)
        rows: list[tuple[Any, ...]] = []
        details: dict[int, dict[str, Any] | None] = {}
        for outcome in outcomes:
            if isinstance(outcome, Delivered):
                rows.append((outcome.id, SENT, 1, None, None, outcome.response, now))
                details[outcome.id] = None
            elif isinstance(outcome, Failed):
                rows.append((outcome.id, FAILED, 1, None, outcome.error, outcome.response, None))
                details[outcome.id] = {"error": outcome.error}
            elif isinstance(outcome, Released):
                rows.append((outcome.id, PENDING, 0, None, None, None, None))
                details[outcome.id] = {"released": True}
            elif isinstance(outcome, RetryLater):
                if outcome.id not in held:
                    continue  # lease lost: reported below
                channel, attempts, created_at = held[outcome.id]
                policy = policies.get(channel, DEFAULT_POLICY)
                decision = policy.decide(attempts + 1, created_at, now, outcome.delay, rand)
                status = PENDING if decision.retry_at else FAILED
                error = (
                    outcome.error if decision.retry_at else f"{outcome.error} ({decision.reason})"
                )
                rows.append(
                    (outcome.id, status, 1, decision.retry_at, error, outcome.response, None)
                )
                details[outcome.id] = {
                    "error": outcome.error,
                    "attempt": attempts + 1,
                    "decision": decision.reason,
                }
                if decision.retry_at:
                    details[outcome.id]["retry_at"] = decision.retry_at.isoformat()
        recorded: dict[int, str] = {}
        for chunk in chunked(rows):
            recorded.update(self._apply(owner, chunk, now))
        self._add_events(
            [EventRow(i, SENDING, s, owner, details[i]) for i, s in sorted(recorded.items())], now
        )
        lost = sorted({o.id for o in outcomes} - set(recorded))
        return RecordResult(recorded=recorded, lost=lost)

    def _held(self, owner: str, ids: list[int]) -> dict[int, tuple[str, int, datetime]]:
        held: dict[int, tuple[str, int, datetime]] = {}
        for chunk in chunked(ids):
            query = Message.select(
                Message.id, Message.channel, Message.attempts, Message.created_at
            ).where(
                Message.id.in_(list(chunk))
                & (Message.status == SENDING)
                & (Message.lease_owner == owner)
            )
            for row in query:
                held[row.id] = (row.channel, row.attempts, row.created_at)
        return held

    def _apply(self, owner: str, rows: Sequence[tuple[Any, ...]], now: datetime) -> dict[int, str]:
        """One UPDATE … FROM (VALUES …) for a chunk of outcomes; returns id → status."""
        prepared = [
            (i, s, n, db_timestamp(at) if at else None, e, r, db_timestamp(sent) if sent else None)
            for i, s, n, at, e, r, sent in rows
        ]
        values, params = self._values(
            prepared, ("BIGINT", "VARCHAR(16)", "INTEGER", "TIMESTAMP", "TEXT", "TEXT", "TIMESTAMP")
        )
        p = self.db.param
        table = Message._meta.table_name
        sql = (
            f"UPDATE {table} SET status = v.column2, attempts = {table}.attempts + v.column3, "
            f"next_attempt_at = COALESCE(v.column4, {table}.next_attempt_at), "
            f"last_error = COALESCE(v.column5, {table}.last_error), "
            f"response = COALESCE(v.column6, {table}.response), "
            f"sent_at = COALESCE(v.column7, {table}.sent_at), "
            f"lease_owner = NULL, lease_expires_at = NULL, updated_at = {p} "
            f"FROM {values} WHERE {table}.id = v.column1 "
            f"AND {table}.status = '{SENDING}' AND {table}.lease_owner = {p} "
            f"RETURNING {table}.id, {table}.status"
        )
        cursor = self.db.execute_sql(sql, [db_timestamp(now), *params, owner])
        return {int(i): s for i, s in cursor.fetchall()}

    # --- leases -------------------------------------------------------------------

    def renew_leases(
        self, owner: str, ids: Sequence[int], lease: float, now: datetime | None = None
    ) -> list[int]:
        """Extend the leases ``owner`` still holds; returns the ids renewed."""
        when = self._now(now)
        until = when + timedelta(seconds=lease)

        def work() -> list[int]:
            renewed: list[int] = []
            for chunk in chunked(list(ids)):
                query = (
                    Message.update(lease_expires_at=until, updated_at=when)
                    .where(
                        Message.id.in_(list(chunk))
                        & (Message.status == SENDING)
                        & (Message.lease_owner == owner)
                    )
                    .returning(Message.id)
                )
                renewed += [row[0] for row in query.tuples().execute()]
            return sorted(renewed)

        return self._write(work) if ids else []

    def expire_leases(self, now: datetime | None = None, limit: int = 1000) -> list[int]:
        """Put messages whose lease ran out back to pending (the holder is presumed
        dead). The attempt is not counted: it may never have reached the peer."""
        when = self._now(now)

        def work() -> list[int]:
            stale = (
                Message.select(Message.id, Message.lease_owner, Message.lease_expires_at)
                .where((Message.status == literal(SENDING)) & (Message.lease_expires_at < when))
                .order_by(Message.lease_expires_at)
                .limit(limit)
            )
            if self.postgres:
                stale = stale.for_update(skip_locked=True)
            found = {row.id: (row.lease_owner, row.lease_expires_at) for row in stale}
            if not found:
                return []
            query = (
                Message.update(
                    status=PENDING, lease_owner=None, lease_expires_at=None, updated_at=when
                )
                .where(Message.id.in_(list(found)) & (Message.status == SENDING))
                .returning(Message.id)
            )
            expired = sorted(row[0] for row in query.tuples().execute())
            self._add_events(
                [
                    EventRow(
                        i,
                        SENDING,
                        PENDING,
                        "lease-expiry",
                        {"owner": found[i][0], "expired_at": found[i][1].isoformat()},
                    )
                    for i in expired
                ],
                when,
            )
            return expired

        return self._write(work)
