"""Operator actions (retry, cancel, resend) and the audit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import peewee as pw

from daemon.domain.limits import BULK_BOUND
from daemon.domain.selection import MessageFilter, OperatorRefused
from daemon.domain.views import OperatorResult
from daemon.store.actions import CANCEL, RESEND, RETRY, Rule
from daemon.store.models import AuditEntry, Message
from daemon.store.operations import OperationOps
from daemon.store.selection import check_filter, described, filter_json, where
from daemon.store.tallies import TallyOps

SAMPLE = 20  # ids a dry run shows


class OperatorOps(OperationOps, TallyOps):
    """retry, cancel and resend: by ids or by a filter (see ``daemon.store.actions``
    for what each takes). A message being sent is never touched; the result says
    how many matched but were left, by status. ``dry_run`` changes nothing and
    answers how many would change, with a sample of their ids. A filter matching
    more than ``bound`` messages starts a bulk operation (``advance_operation``
    does it in batches); ``known_channels``, when given, refuses any other channel.
    Every change writes an audit entry in its transaction."""

    def retry(
        self,
        selector: MessageFilter,
        actor: str = "operator",
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        known_channels: Collection[str] | None = None,
        bound: int = BULK_BOUND,
    ) -> OperatorResult:
        """Make failed (by a filter naming no status), cancelled or pending
        messages due now with their attempts reset."""
        return self._operate(RETRY, selector, actor, now, dry_run, known_channels, bound)

    def cancel(
        self,
        selector: MessageFilter,
        actor: str = "operator",
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        known_channels: Collection[str] | None = None,
        bound: int = BULK_BOUND,
    ) -> OperatorResult:
        """Cancel pending (by a filter naming no status) or failed messages."""
        return self._operate(CANCEL, selector, actor, now, dry_run, known_channels, bound)

    def resend(
        self,
        selector: MessageFilter,
        actor: str = "operator",
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        known_channels: Collection[str] | None = None,
        bound: int = BULK_BOUND,
    ) -> OperatorResult:
        """Send sent, confirmed or rejected messages again: the same payload and
        key, pending and due now with attempts reset (a filter must name the
        statuses)."""
        return self._operate(RESEND, selector, actor, now, dry_run, known_channels, bound)

    def _operate(
        self,
        rule: Rule,
        selector: MessageFilter,
        actor: str,
        now: datetime | None,
        dry_run: bool,
        known_channels: Collection[str] | None,
        bound: int,
    ) -> OperatorResult:
        if selector.empty:
            raise OperatorRefused(
                "select messages by id or by a filter (channel, status, kind, key, time)", "ids"
            )
        check_filter(selector, known_channels)
        if len(selector.ids) > bound:
            raise OperatorRefused(f"at most {bound} ids at once: select by a filter instead", "ids")
        statuses = rule.statuses(selector)
        base = where(replace(selector, statuses=()), self.postgres)
        eligible = base & Message.status.in_(list(statuses))

        def counts() -> tuple[int, dict[str, int], list[int]]:
            if _whole_channels(selector):  # "all failed on hie": the tallies have it
                scope: dict[str, int] = {}
                for (channel, status), n in self._counts().items():
                    if selector.channel in (None, channel):
                        scope[status] = scope.get(status, 0) + n
                matched = sum(scope.get(s, 0) for s in statuses)
                return matched, {s: n for s, n in scope.items() if s not in statuses}, []
            matched = Message.select().where(eligible).count()
            others = (
                Message.select(Message.status, pw.fn.COUNT(Message.id))
                .where(base & Message.status.not_in(list(statuses)))
                .group_by(Message.status)
                .tuples()
            )
            return matched, dict(others), self._missing(selector.ids)

        if dry_run:

            def look() -> OperatorResult:
                matched, skipped, missing = counts()
                sample = Message.select(Message.id).where(eligible).order_by(Message.id)
                return OperatorResult(
                    skipped=skipped,
                    missing=missing,
                    matched=matched,
                    sample=[r[0] for r in sample.limit(SAMPLE).tuples()],
                    dry_run=True,
                )

            return self._read(look)

        def work() -> OperatorResult:
            when = self._now(now)
            matched, skipped, missing = counts()
            if matched > bound:
                operation = self._start_operation(
                    rule, replace(selector, statuses=statuses), actor, matched, skipped, when
                )
                return OperatorResult(skipped=skipped, matched=matched, operation=operation)
            locked = Message.select(Message.id, Message.status).where(eligible)
            if self.postgres:
                locked = locked.for_update()
            rows = sorted(locked.tuples())
            asked = selector if selector.ids else replace(selector, statuses=statuses)
            self._change(rule, rows, actor, when, described(asked), filter_json(asked))
            return OperatorResult(
                changed=[i for i, _ in rows], skipped=skipped, missing=missing, matched=len(rows)
            )

        return self._write(work)

    def _missing(self, ids: Sequence[int]) -> list[int]:
        if not ids:
            return []
        found = {r[0] for r in Message.select(Message.id).where(Message.id.in_(list(ids))).tuples()}
        return sorted(set(ids) - found)

    def record_action(
        self,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any] | None = None,
        changed: int = 1,
        now: datetime | None = None,
    ) -> int:
        """Record an operator action made outside the database (a process started
        or stopped through supervisord); its audit id."""
        return self._write(
            lambda: self._audit(actor, action, target, details, changed, self._now(now))
        )

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


def _whole_channels(selector: MessageFilter) -> bool:
    """A filter by channel (or none) and statuses only: its counts are the tallies'."""
    return not (
        selector.ids or selector.since or selector.until or selector.kind or selector.key_prefix
    )
