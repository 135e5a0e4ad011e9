"""Operator actions (retry, cancel) and the figures behind ``stats``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from daemon.store.base import CHUNK, EventRow, StoreBase, chunked, literal
from daemon.store.models import (
    CANCELLED,
    FAILED,
    PENDING,
    REJECTED,
    SENT,
    AuditEntry,
    Message,
    StatusEvent,
)
from daemon.store.types import ChannelStats, MessageFilter, OperatorResult

RETRYABLE = (FAILED, CANCELLED, REJECTED, PENDING)
CANCELLABLE = (PENDING, FAILED)


class OperatorOps(StoreBase):
    def retry(
        self, selector: MessageFilter, actor: str = "operator", now: datetime | None = None
    ) -> OperatorResult:
        """Make matching messages due now with their attempts reset. By filter
        without ``statuses``, only failed messages are retried; by id, any
        message that is failed, cancelled, rejected or pending."""
        when = self._now(now)
        changes = {"status": PENDING, "attempts": 0, "next_attempt_at": when}
        return self._operate(selector, RETRYABLE, (FAILED,), PENDING, changes, actor, when)

    def cancel(
        self, selector: MessageFilter, actor: str = "operator", now: datetime | None = None
    ) -> OperatorResult:
        """Cancel matching messages that are pending or failed (by filter without
        ``statuses``: pending only). A message being sent is never cancelled."""
        when = self._now(now)
        changes = {"status": CANCELLED}
        return self._operate(selector, CANCELLABLE, (PENDING,), CANCELLED, changes, actor, when)

    def _operate(
        self,
        selector: MessageFilter,
        allowed: Sequence[str],
        filter_default: Sequence[str],
        target: str,
        changes: dict[str, Any],
        actor: str,
        now: datetime,
    ) -> OperatorResult:
        if selector.empty:
            raise ValueError("select messages by id or by a filter (channel, status, time)")
        wanted = selector.statuses or (allowed if selector.ids else filter_default)
        statuses = [s for s in wanted if s in allowed]

        def work() -> OperatorResult:
            where = _where(selector)
            matched = Message.select(Message.id, Message.status).where(
                where & Message.status.in_(statuses)
            )
            if self.postgres:
                matched = matched.for_update()
            rows = list(matched.tuples())
            others = (
                Message.select(Message.status, pw.fn.COUNT(Message.id))
                .where(where & Message.status.not_in(statuses))
                .group_by(Message.status)
                .tuples()
            )
            skipped = dict(others)
            for chunk in chunked([r[0] for r in rows]):
                Message.update(
                    lease_owner=None, lease_expires_at=None, updated_at=now, **changes
                ).where(Message.id.in_(list(chunk))).execute()
            self._add_events([EventRow(i, s, target, actor) for i, s in rows], now)
            if target == PENDING and rows:
                self._notify(
                    r[0]
                    for r in Message.select(Message.channel)
                    .where(Message.id.in_([i for i, _ in rows[:CHUNK]]))
                    .distinct()
                    .tuples()
                )
            missing: list[int] = []
            if selector.ids:
                found = {
                    r[0]
                    for r in Message.select(Message.id)
                    .where(Message.id.in_(list(selector.ids)))
                    .tuples()
                }
                missing = sorted(set(selector.ids) - found)
            action = "retry" if target == PENDING else "cancel"
            self._audit(actor, action, _described(selector), _selector(selector), len(rows), now)
            return OperatorResult(
                changed=sorted(r[0] for r in rows), skipped=skipped, missing=missing
            )

        return self._write(work)

    def audit(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        """The operator actions, newest first."""

        def work() -> list[dict[str, Any]]:
            query = AuditEntry.select().order_by(AuditEntry.id.desc()).limit(limit)
            if before_id is not None:
                query = query.where(AuditEntry.id < before_id)
            return [
                {
                    "id": row.id,
                    "actor": row.actor,
                    "action": row.action,
                    "target": row.target,
                    "details": row.details,
                    "changed": row.changed,
                    "at": row.at.isoformat(),
                }
                for row in query
            ]

        return self._read(work)

    def stats(self, now: datetime | None = None, window: float = 3600.0) -> list[ChannelStats]:
        """Per channel: counts by status, how many are due, the age of the oldest
        pending message, and how many reached sent / failed in ``window`` seconds."""
        when = self._now(now)
        since = when - timedelta(seconds=window)

        def work() -> list[ChannelStats]:
            counts: dict[str, dict[str, int]] = {}
            grouped = (
                Message.select(Message.channel, Message.status, pw.fn.COUNT(Message.id))
                .group_by(Message.channel, Message.status)
                .tuples()
            )
            for channel, status, count in grouped:
                counts.setdefault(channel, {})[status] = count
            finished: dict[tuple[str, str], int] = {}
            recent = (
                StatusEvent.select(
                    Message.channel, StatusEvent.to_status, pw.fn.COUNT(StatusEvent.id)
                )
                .join(Message)
                .where((StatusEvent.at >= since) & StatusEvent.to_status.in_((SENT, FAILED)))
                .group_by(Message.channel, StatusEvent.to_status)
                .tuples()
            )
            for channel, status, count in recent:
                finished[(channel, status)] = count
                counts.setdefault(channel, {})
            return [
                ChannelStats(
                    channel=channel,
                    counts=dict(sorted(by_status.items())),
                    due=self._due(channel, when) if by_status.get(PENDING) else 0,
                    oldest_pending_age=self._oldest_pending_age(channel, when)
                    if by_status.get(PENDING)
                    else None,
                    sent_in_window=finished.get((channel, SENT), 0),
                    failed_in_window=finished.get((channel, FAILED), 0),
                )
                for channel, by_status in sorted(counts.items())
            ]

        return self._read(work)

    def _due(self, channel: str, now: datetime) -> int:
        return (
            Message.select()
            .where(
                (Message.channel == channel)
                & (Message.status == literal(PENDING))
                & (Message.next_attempt_at <= now)
            )
            .count()
        )

    def _oldest_pending_age(self, channel: str, now: datetime) -> float | None:
        oldest = Message.select(pw.fn.MIN(Message.id)).where(
            (Message.channel == channel) & (Message.status == PENDING)
        )
        row = Message.select(Message.created_at).where(Message.id == oldest).first()
        return None if row is None else max(0.0, (now - row.created_at).total_seconds())


def _selector(selector: MessageFilter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if selector.ids:
        out["ids"] = list(selector.ids)
    if selector.channel:
        out["channel"] = selector.channel
    if selector.statuses:
        out["statuses"] = list(selector.statuses)
    if selector.since:
        out["since"] = selector.since.isoformat()
    if selector.until:
        out["until"] = selector.until.isoformat()
    return out


def _described(selector: MessageFilter) -> str:
    if selector.ids:
        shown = ", ".join(map(str, selector.ids[:10]))
        return f"messages {shown}" + (" …" if len(selector.ids) > 10 else "")
    parts = [f"{k} {v}" for k, v in _selector(selector).items()]
    return "messages where " + ", ".join(parts)


def _where(selector: MessageFilter) -> pw.Expression:
    clauses: list[pw.Expression] = []
    if selector.ids:
        clauses.append(Message.id.in_(list(selector.ids)))
    if selector.channel:
        clauses.append(Message.channel == selector.channel)
    if selector.since:
        clauses.append(Message.created_at >= selector.since)
    if selector.until:
        clauses.append(Message.created_at < selector.until)
    expr = clauses[0] if clauses else pw.SQL("1 = 1")
    for clause in clauses[1:]:
        expr = expr & clause
    return expr
