"""The delivery path: enqueue, claim, record outcomes, leases, rate-limit tokens.
Every statement it runs is the dialect's (``daemon.store.sql``), by name."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from daemon.domain.limits import storable
from daemon.domain.messages import (
    PREREQUISITE_MARK,
    AttemptResult,
    ClaimedMessage,
    Delivered,
    EnqueueResult,
    Failed,
    NewMessage,
    RecordResult,
    Released,
    RetryAt,
)
from daemon.domain.statuses import DELIVERED, FAILED, PENDING, SENDING, SENT
from daemon.resilience.ratelimit import Bucket
from daemon.store.enqueue import Enqueuer, checked
from daemon.store.models import db_timestamp, read_timestamp, tuples
from daemon.store.sql.base import EventRow, OutcomeRow, chunked
from daemon.store.unit import Unit
from daemon.store.visits import VisitProgress


class Outbox:
    def __init__(self, unit: Unit, enqueuer: Enqueuer, progress: VisitProgress) -> None:
        self.unit = unit
        self.sql = unit.sql
        self.m = unit.models
        self.enqueuer = enqueuer
        self.progress = progress

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
        batch = [checked(m, i) for i, m in enumerate(messages)]
        if not batch:
            return []
        return self.unit.write(lambda: self.enqueuer.enqueue(batch, actor, self.unit.now(now)))

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
            when = self.unit.now(now)
            until = when + timedelta(seconds=lease)
            stamp, expiry = db_timestamp(when), db_timestamp(until)
            claimed: list[ClaimedMessage] = []
            for channel in channels:
                room = limit - len(claimed)
                if room <= 0:
                    break
                rows = self.sql.claim(channel, owner, room, stamp, expiry, channel in ordered)
                claimed += sorted(
                    (
                        ClaimedMessage(
                            id_, channel_, kind, key, bytes(payload), attempts,
                            read_timestamp(created), until, after, group,
                        )
                        for id_, channel_, kind, key, payload, attempts, created, after, group
                        in rows
                    ),
                    key=lambda m: m.id,
                )  # fmt: skip
            self._add_after_responses(claimed)
            return claimed

        return self.unit.write(work) if limit > 0 else []

    def _add_after_responses(self, claimed: list[ClaimedMessage]) -> None:
        """The prerequisite's response (sent: the claim waits for it) for each claimed
        message whose payload refers to it (``{{after.id}}``); one query, none when
        no payload does."""
        referring = [
            (m, m.after_id) for m in claimed if m.after_id and PREREQUISITE_MARK in m.payload
        ]
        if not referring:
            return
        Message = self.m.Message
        after = list({after_id for _, after_id in referring})
        query = Message.select(Message.id, Message.response).where(Message.id.in_(after))
        responses: dict[int, str | None] = dict(tuples(query))
        for message, after_id in referring:
            message.after_response = responses.get(after_id)

    # --- outcomes -----------------------------------------------------------------

    def record(
        self, owner: str, results: Sequence[AttemptResult], now: datetime | None = None
    ) -> RecordResult:
        """Write what became of attempts ``owner`` made, as decided by the caller,
        with their status events, in one transaction. Only messages ``owner`` still
        holds are changed. Progress entries the results carry are merged into the
        messages' tracked items (visits) in the same transaction."""

        def work() -> RecordResult:
            when = self.unit.now(now)
            stamp = db_timestamp(when)
            recorded: dict[int, str] = {}
            for chunk in chunked(_outcome_rows(results, stamp)):
                recorded.update(self.sql.record_outcomes(owner, chunk, stamp))
            progress = {
                r.id: r.progress
                for r in results
                if not isinstance(r, Released) and r.progress is not None and r.id in recorded
            }
            if progress:
                self.progress.merge_outcomes(progress, when)
            lost = sorted({r.id for r in results} - set(recorded))
            return RecordResult(recorded=recorded, lost=lost)

        return self.unit.write(work)

    def resend_predecessors(
        self, owner: str, message_id: int, reason: str, now: datetime | None = None
    ) -> list[tuple[int, str]] | None:
        """The peer lost what came before a message ``owner`` holds: put the sent
        (or confirmed) messages of its group that are older than it back to
        pending, due now, so they go again in order before it. Once per message:
        None when it was done before (or the message is no longer held);
        otherwise the (id, key) of the messages sent again, oldest first."""
        Message = self.m.Message

        def work() -> list[tuple[int, str]] | None:
            when = self.unit.now(now)
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
            earlier = tuples(
                Message.select(Message.id, Message.key, Message.status)
                .where(
                    (Message.channel == row.channel)
                    & (Message.group_key == row.group_key)
                    & (Message.id < message_id)
                    & Message.status.in_(DELIVERED)
                )
                .order_by(Message.id)
            )
            Message.update(predecessors_resent_at=when).where(Message.id == message_id).execute()
            if not earlier:
                return []
            ids = [i for i, _, _ in earlier]
            Message.update(status=PENDING, attempts=0, next_attempt_at=when, updated_at=when).where(
                Message.id.in_(ids)
            ).execute()
            detail = {"resent_before": message_id, "reason": reason}
            self.unit.events([EventRow(i, s, PENDING, owner, detail) for i, _, s in earlier], when)
            self.unit.notify([row.channel])
            return [(i, k) for i, k, _ in earlier]

        return self.unit.write(work)

    # --- rate limits ------------------------------------------------------------

    def take_tokens(
        self, channel: str, wanted: int, bucket: Bucket, now: datetime | None = None
    ) -> tuple[int, float]:
        """Take up to ``wanted`` tokens from the channel's shared bucket in one
        transaction: (granted, seconds to wait before asking again when none was
        granted). The bucket's row is locked while it changes, so the limit holds
        across processes however many tokens each takes at a time."""

        def work() -> tuple[int, float]:
            when = self.unit.now(now)
            found = self.sql.locked_bucket(channel)
            if found is None:
                self.sql.create_bucket(channel, bucket.capacity, db_timestamp(when))
                found = self.sql.locked_bucket(channel)
                assert found is not None
            tokens, updated_at = found
            tokens = bucket.refill(tokens, (when - updated_at).total_seconds())
            granted, left, wait = bucket.take(tokens, wanted)
            self.sql.save_bucket(channel, left, db_timestamp(max(when, updated_at)))
            return granted, wait

        return self.unit.write(work)

    # --- leases -------------------------------------------------------------------

    def renew_leases(
        self, owner: str, ids: Sequence[int], lease: float, now: datetime | None = None
    ) -> list[int]:
        """Extend the leases ``owner`` still holds; returns the ids renewed."""

        def work() -> list[int]:
            when = self.unit.now(now)
            until, stamp = db_timestamp(when + timedelta(seconds=lease)), db_timestamp(when)
            renewed: list[int] = []
            for chunk in chunked(list(ids)):
                renewed += self.sql.renew_leases(owner, chunk, until, stamp)
            return sorted(renewed)

        return self.unit.write(work) if ids else []

    def expire_leases(self, now: datetime | None = None, limit: int = 1000) -> list[int]:
        """Put messages whose lease ran out back to pending (the holder is presumed
        dead). The attempt is not counted: it may never have reached the peer."""

        def work() -> list[int]:
            when = self.unit.now(now)
            stamp = db_timestamp(when)
            found = {i: (owner, at) for i, owner, at in self.sql.stale_leases(stamp, limit)}
            if not found:
                return []
            expired = sorted(self.sql.release_leases(sorted(found), stamp))
            events = [
                EventRow(
                    i, SENDING, PENDING, "lease-expiry",
                    {"owner": found[i][0], "expired_at": found[i][1].isoformat()},
                )
                for i in expired
            ]  # fmt: skip
            self.unit.events(events, when)
            return expired

        return self.unit.write(work)


def _outcome_rows(results: Sequence[AttemptResult], stamp: str) -> list[OutcomeRow]:
    """(id, status, attempts added, next attempt, error, response, sent at, event
    details) per result, timestamps in their stored form."""
    rows: list[OutcomeRow] = []
    for r in results:
        details: dict[str, Any] | None
        row: tuple[Any, ...]
        if isinstance(r, Delivered):  # a peer's answer may hold a NUL: ``storable``
            row = (r.id, SENT, 1, None, None, storable(r.response), stamp)
            details = None
        elif isinstance(r, RetryAt):
            row = (r.id, PENDING, 1 if r.counted else 0, db_timestamp(r.at), storable(r.error))
            row += (storable(r.response), None)
            details = r.details if r.details is not None else {"error": r.error}
        elif isinstance(r, Failed):
            row = (r.id, FAILED, 1, None, storable(r.error), storable(r.response), None)
            details = r.details if r.details is not None else {"error": r.error}
        else:
            row = (r.id, PENDING, 0, None, None, None, None)
            details = {"released": True}
        text = None if details is None else json.dumps(details, sort_keys=True)
        rows.append(cast(OutcomeRow, (*row, text)))
    return rows
