"""Outbox operations on the delivery path: enqueue, claim, record outcomes, leases."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from daemon.domain.errors import StoreError
from daemon.domain.messages import (
    PREREQUISITE_MARK,
    AttemptResult,
    ClaimedMessage,
    Delivered,
    EnqueueResult,
    Failed,
    InvalidMessage,
    NewMessage,
    RecordResult,
    Released,
    RetryAt,
    UnknownPrerequisite,
)
from daemon.domain.statuses import DELIVERED, FAILED, PENDING, SENDING, SENT
from daemon.resilience.ratelimit import Bucket
from daemon.store.base import EventRow, StoreBase, chunked, literal
from daemon.store.models import Message, RateBucket, db_timestamp, read_timestamp

_LIMITS = {"channel": 64, "key": 255, "kind": 64, "group_key": 255, "after_key": 255}
_OPTIONAL = ("group_key", "after_key")
# the array parameters of ``Statements.insert_messages_arrays``, in the order of
# the rows ``_insert_messages`` builds
ARRAY_PARAMS = ("channel", "kind", "key", "payload", "due", "after", "group", "visit")


def check_name(what: str, value: object, limit: int) -> None:
    """A key, kind, channel or group: 1 to ``limit`` printable characters, not
    beginning or ending with a space (no line breaks, tabs, escapes or NULs:
    what is stored is shown in logs and tables as it is)."""
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise InvalidMessage(f"{what} is longer than {limit} characters")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise InvalidMessage(f"{what} holds a character that cannot be shown ({bad!r})")
    if value != value.strip():
        raise InvalidMessage(f"{what} begins or ends with a space: {value!r}")


def _check(message: NewMessage) -> NewMessage:
    for name, limit in _LIMITS.items():
        value = getattr(message, name)
        if value is None and name in _OPTIONAL:
            continue
        check_name(name, value, limit)
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
        return self._write(lambda: self._enqueue(batch, actor, self._now(now))) if batch else []

    def _enqueue(
        self,
        batch: list[NewMessage],
        actor: str,
        now: datetime,
        visit_ids: Mapping[str, int] | None = None,
    ) -> list[EnqueueResult]:
        ids: dict[tuple[str, str], int] = self._ids_by_key(
            {(m.channel, m.after_key) for m in batch if m.after_key}
        )
        self._check_ids_exist({m.after_id for m in batch if m.after_id is not None})
        created: dict[tuple[str, str], int] = {}
        stamp = db_timestamp(now)
        for chunk in chunked(batch):
            rows = self._insert_messages(chunk, ids, visit_ids, actor, stamp, now)
            for id_, channel, key in rows:
                created[(channel, key)] = id_
            if not self.postgres:
                self._add_events([EventRow(r[0], None, PENDING, actor) for r in rows], now)
        ids.update(created)
        self._link_batch_prerequisites(batch, created, ids)
        self._notify(m.channel for m in batch if (m.channel, m.key) in created and not m.not_before)
        existing = self._rows_by_key(
            {(m.channel, m.key) for m in batch if (m.channel, m.key) not in created}
        )
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

    def _insert_messages(
        self,
        chunk: Sequence[NewMessage],
        ids: Mapping[tuple[str, str], int],
        visit_ids: Mapping[str, int] | None,
        actor: str,
        stamp: str,
        now: datetime,
    ) -> list[tuple[Any, ...]]:
        """Insert one chunk in one statement (on PostgreSQL with its creation
        events); (id, channel, key) of the rows inserted."""
        rows = []
        for m in chunk:
            after = m.after_id
            if after is None and m.after_key:
                after = ids.get((m.channel, m.after_key))
            due = db_timestamp(max(m.not_before, now)) if m.not_before else stamp
            visit = visit_ids.get(m.visit) if visit_ids and m.visit is not None else None
            rows.append((m.channel, m.kind, m.key, m.payload, due, after, m.group_key, visit))
        if self.postgres:
            columns = zip(*rows, strict=True)
            arrays = {name: list(c) for name, c in zip(ARRAY_PARAMS, columns, strict=True)}
            params = {"status": PENDING, "at": stamp, "actor": actor, **arrays}
            return self._execute(self.sql.insert_messages_arrays, params)
        values: list[Any] = []
        for channel, kind, key, payload, due, after, group, visit in rows:
            values += [channel, kind, key, payload, PENDING, 0, due, after, group, stamp, stamp]
            values.append(visit)
        return self._execute(self.sql.insert_messages(len(chunk)), values)

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
        ordered: Collection[str] = (),
    ) -> list[ClaimedMessage]:
        """Lease up to ``limit`` due messages of ``channels`` to ``owner`` for
        ``lease`` seconds: oldest due first, prerequisites sent, each message
        held by one owner at a time. Channels are filled in the order given.
        On an ``ordered`` channel a message with a group key waits while an
        older message of its group is pending or being sent."""

        def work() -> list[ClaimedMessage]:
            # read the clock once the write lock is held, so waiting for it
            # does not shorten the lease
            when = self._now(now)
            until = when + timedelta(seconds=lease)
            claimed: list[ClaimedMessage] = []
            for channel in channels:
                room = limit - len(claimed)
                if room <= 0:
                    break
                in_order = channel in ordered
                claimed += self._claim_channel(channel, owner, room, when, until, in_order)
            return claimed

        return self._write(work) if limit > 0 else []

    def _claim_channel(
        self,
        channel: str,
        owner: str,
        limit: int,
        now: datetime,
        until: datetime,
        ordered: bool,
    ) -> list[ClaimedMessage]:
        stamp, expiry = db_timestamp(now), db_timestamp(until)
        if self.postgres:  # one statement, the events included
            named = {"channel": channel, "now": stamp, "limit": limit, "owner": owner}
            named["expiry"] = expiry
            rows: list[Sequence[Any]] = self._execute(self.sql.claim(ordered), named)
        else:
            rows = self._lease_sqlite(channel, owner, limit, stamp, expiry, ordered)
        # rows: (id, channel, kind, key, payload, attempts, created_at, after_id, group_key)
        claimed = [
            ClaimedMessage(
                id_, channel_, kind, key, bytes(payload), attempts, read_timestamp(created),
                until, after, group,
            )
            for id_, channel_, kind, key, payload, attempts, created, after, group in rows
        ]  # fmt: skip
        claimed.sort(key=lambda m: m.id)
        self._add_after_responses(claimed)
        return claimed

    def _add_after_responses(self, claimed: list[ClaimedMessage]) -> None:
        """The prerequisite's response (sent: the claim waits for it) for each claimed
        message whose payload refers to it (``{{after.id}}``); one query, none when
        no payload does."""
        referring = [
            (m, m.after_id) for m in claimed if m.after_id and PREREQUISITE_MARK in m.payload
        ]
        if not referring:
            return
        after = list({after_id for _, after_id in referring})
        query = Message.select(Message.id, Message.response).where(Message.id.in_(after))
        responses: dict[int, str | None] = {row.id: row.response for row in query}
        for message, after_id in referring:
            message.after_response = responses.get(after_id)

    def _lease_sqlite(
        self, channel: str, owner: str, limit: int, stamp: str, expiry: str, ordered: bool
    ) -> list[Sequence[Any]]:
        """The SQLite claim in four statements of one row each (see ``Statements``);
        the payloads come joined in one value, or row by row when that would be
        too big for one."""
        due = {"channel": channel, "now": stamp, "limit": limit}
        ids = self._execute(self.sql.due_ids(ordered), due)[0][0]
        if ids == "[]":
            return []
        lease = {"owner": owner, "expiry": expiry, "now": stamp, "ids": ids}
        self._execute(self.sql.lease, lease)
        self._execute(self.sql.lease_events, {"owner": owner, "now": stamp, "ids": ids})
        leased = {"ids": ids, "owner": owner}
        try:
            table, joined = self._execute(self.sql.leased, leased)[0]
        except pw.DataError:  # "string or blob too big": the payloads one by one
            return self._execute(self.sql.leased_rows, leased)
        rows: list[Sequence[Any]] = []
        at = 0
        for id_, channel_, kind, key, size, *rest in json.loads(table):
            rows.append((id_, channel_, kind, key, joined[at : at + size], *rest))
            at += size
        if at != len(joined):
            raise StoreError(f"claimed payloads do not add up ({at} of {len(joined)} bytes)")
        return rows

    # --- outcomes -----------------------------------------------------------------

    def record(
        self, owner: str, results: Sequence[AttemptResult], now: datetime | None = None
    ) -> RecordResult:
        """Write what became of attempts ``owner`` made, as decided by the caller,
        with their status events, in one transaction. Only messages ``owner`` still
        holds are changed. Progress entries the results carry are merged into the
        messages' tracked items (visits) in the same transaction."""

        def work() -> RecordResult:
            when = self._now(now)
            result = self._record(owner, results, when)
            progress = {
                r.id: r.progress
                for r in results
                if not isinstance(r, Released)
                and r.progress is not None
                and r.id in result.recorded
            }
            if progress:
                self._merge_message_progress(progress, when)
            return result

        return self._write(work)

    def _record(self, owner: str, results: Sequence[AttemptResult], now: datetime) -> RecordResult:
        # (id, status, attempts added, next attempt, error, response, sent at)
        rows: list[tuple[Any, ...]] = []
        details: dict[int, dict[str, Any] | None] = {}
        for r in results:
            if isinstance(r, Delivered):
                rows.append((r.id, SENT, 1, None, None, r.response, now))
                details[r.id] = None
            elif isinstance(r, RetryAt):
                rows.append((r.id, PENDING, 1 if r.counted else 0, r.at, r.error, r.response, None))
                details[r.id] = r.details if r.details is not None else {"error": r.error}
            elif isinstance(r, Failed):
                rows.append((r.id, FAILED, 1, None, r.error, r.response, None))
                details[r.id] = r.details if r.details is not None else {"error": r.error}
            else:
                rows.append((r.id, PENDING, 0, None, None, None, None))
                details[r.id] = {"released": True}
        recorded: dict[int, str] = {}
        for chunk in chunked(rows):
            recorded.update(self._apply(owner, chunk, details, now))
        if not self.postgres:  # PostgreSQL wrote them in the update statement
            self._add_events(
                [EventRow(i, SENDING, s, owner, details[i]) for i, s in sorted(recorded.items())],
                now,
            )
        lost = sorted({r.id for r in results} - set(recorded))
        return RecordResult(recorded=recorded, lost=lost)

    def resend_predecessors(
        self, owner: str, message_id: int, reason: str, now: datetime | None = None
    ) -> list[tuple[int, str]] | None:
        """The peer lost what came before a message ``owner`` holds: put the sent
        (or confirmed) messages of its group that are older than it back to
        pending, due now, so they go again in order before it. Once per message:
        None when it was done before (or the message is no longer held);
        otherwise the (id, key) of the messages sent again, oldest first."""

        def work() -> list[tuple[int, str]] | None:
            when = self._now(now)
            row = (
                Message.select(Message.channel, Message.group_key, Message.predecessors_resent_at)
                .where(
                    (Message.id == message_id)
                    & (Message.status == SENDING)
                    & (Message.lease_owner == owner)
                )
                .first()
            )
            if row is None or row.predecessors_resent_at is not None or row.group_key is None:
                return None
            earlier = list(
                Message.select(Message.id, Message.key, Message.status)
                .where(
                    (Message.channel == row.channel)
                    & (Message.group_key == row.group_key)
                    & (Message.id < message_id)
                    & Message.status.in_(DELIVERED)
                )
                .order_by(Message.id)
                .tuples()
            )
            Message.update(predecessors_resent_at=when).where(Message.id == message_id).execute()
            if not earlier:
                return []
            ids = [i for i, _, _ in earlier]
            Message.update(status=PENDING, attempts=0, next_attempt_at=when, updated_at=when).where(
                Message.id.in_(ids)
            ).execute()
            detail = {"resent_before": message_id, "reason": reason}
            self._add_events([EventRow(i, s, PENDING, owner, detail) for i, _, s in earlier], when)
            self._notify([row.channel])
            return [(i, k) for i, k, _ in earlier]

        return self._write(work)

    def _apply(
        self,
        owner: str,
        rows: Sequence[tuple[Any, ...]],
        details: Mapping[int, dict[str, Any] | None],
        now: datetime,
    ) -> dict[int, str]:
        """One statement for a chunk of outcomes; returns id → status written."""
        stamp = db_timestamp(now)
        params: list[Any] = []
        for i, status, inc, retry_at, error, response, sent_at in rows:
            extra = details[i]
            params += [
                i,
                status,
                inc,
                db_timestamp(retry_at) if retry_at else None,
                error,
                response,
                # sent now, as a rule: one conversion per chunk, not per row
                (stamp if sent_at is now else db_timestamp(sent_at)) if sent_at else None,
                None if extra is None else json.dumps(extra, sort_keys=True),
            ]
        if self.postgres:  # WITH v AS (VALUES …) UPDATE … SET updated_at … owner; events
            params += [stamp, owner, owner, stamp]
            result = self._execute(self.sql.apply_outcomes(len(rows)), params)
            return {int(i): s for i, s in result}
        # SQLite: which rows are still held, then UPDATE … SET updated_at … FROM
        # (VALUES …) … owner; the write lock is held from BEGIN, so nothing changes between
        ids = json.dumps([row[0] for row in rows])
        held = set(json.loads(self._execute(self.sql.held_ids, {"ids": ids, "owner": owner})[0][0]))
        if held:
            self._execute(self.sql.apply_outcomes(len(rows)), [stamp, *params, owner])
        return {row[0]: row[1] for row in rows if row[0] in held}

    # --- rate limits ------------------------------------------------------------

    def take_tokens(
        self, channel: str, wanted: int, bucket: Bucket, now: datetime | None = None
    ) -> tuple[int, float]:
        """Take up to ``wanted`` tokens from the channel's shared bucket:
        (granted, seconds to wait before asking again when none was granted)."""

        def work() -> tuple[int, float]:
            when = self._now(now)
            row = self._locked_bucket(channel)
            if row is None:
                RateBucket.insert(
                    channel=channel, tokens=bucket.capacity, updated_at=when
                ).on_conflict(conflict_target=[RateBucket.channel], action="IGNORE").execute()
                row = self._locked_bucket(channel)
            elapsed = (when - row.updated_at).total_seconds()
            tokens = bucket.refill(row.tokens, elapsed)
            granted, left, wait = bucket.take(tokens, wanted)
            RateBucket.update(tokens=left, updated_at=max(when, row.updated_at)).where(
                RateBucket.channel == channel
            ).execute()
            return granted, wait

        return self._write(work)

    def _locked_bucket(self, channel: str) -> RateBucket | None:
        query = RateBucket.select().where(RateBucket.channel == channel)
        return (query.for_update() if self.postgres else query).first()

    # --- leases -------------------------------------------------------------------

    def renew_leases(
        self, owner: str, ids: Sequence[int], lease: float, now: datetime | None = None
    ) -> list[int]:
        """Extend the leases ``owner`` still holds; returns the ids renewed."""

        def work() -> list[int]:
            when = self._now(now)
            until = when + timedelta(seconds=lease)
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

        def work() -> list[int]:
            when = self._now(now)
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
