"""Operator actions (retry, cancel, resend) and the audit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

import peewee as pw

from daemon.domain.actions import CANCEL, RESEND, RETRY, Rule
from daemon.domain.limits import BULK_BOUND
from daemon.domain.selection import MessageFilter, OperatorRefused
from daemon.domain.views import OperatorResult
from daemon.store.actions import Actions
from daemon.store.models import tuples
from daemon.store.operations import Operations
from daemon.store.selection import Selection, check_filter, described, filter_json
from daemon.store.tallies import Tallies
from daemon.store.unit import Unit

SAMPLE = 20  # ids a dry run shows


class Operator:
    """retry, cancel and resend: by ids or by a filter (see ``daemon.store.actions``
    for what each takes). A message being sent is never touched; the result says
    how many matched but were left, by status. ``dry_run`` changes nothing and
    answers how many would change, with a sample of their ids. A filter matching
    more than ``bound`` messages starts a bulk operation (``advance_operation``
    does it in batches); ``known_channels``, when given, refuses any other channel.
    Every change writes an audit entry in its transaction, with the operator's
    ``reason`` when one is given (a bulk operation's batches each carry it)."""

    def __init__(
        self,
        unit: Unit,
        actions: Actions,
        operations: Operations,
        selection: Selection,
        tallies: Tallies,
    ) -> None:
        self.unit = unit
        self.sql = unit.sql
        self.m = unit.models
        self.actions = actions
        self.operations = operations
        self.selection = selection
        self.tallies = tallies

    def retry(
        self,
        selector: MessageFilter,
        actor: str = "operator",
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        known_channels: Collection[str] | None = None,
        bound: int = BULK_BOUND,
        reason: str | None = None,
    ) -> OperatorResult:
        """Make failed (by a filter naming no status), cancelled or pending
        messages due now with their attempts reset."""
        return self._operate(RETRY, selector, actor, now, dry_run, known_channels, bound, reason)

    def cancel(
        self,
        selector: MessageFilter,
        actor: str = "operator",
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        known_channels: Collection[str] | None = None,
        bound: int = BULK_BOUND,
        reason: str | None = None,
    ) -> OperatorResult:
        """Cancel pending (by a filter naming no status) or failed messages."""
        return self._operate(CANCEL, selector, actor, now, dry_run, known_channels, bound, reason)

    def resend(
        self,
        selector: MessageFilter,
        actor: str = "operator",
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        known_channels: Collection[str] | None = None,
        bound: int = BULK_BOUND,
        reason: str | None = None,
    ) -> OperatorResult:
        """Send sent, confirmed or rejected messages again: the same payload and
        key, pending and due now with attempts reset (a filter must name the
        statuses)."""
        return self._operate(RESEND, selector, actor, now, dry_run, known_channels, bound, reason)

    def _operate(
        self,
        rule: Rule,
        selector: MessageFilter,
        actor: str,
        now: datetime | None,
        dry_run: bool,
        known_channels: Collection[str] | None,
        bound: int,
        reason: str | None = None,
    ) -> OperatorResult:
        if selector.empty:
            raise OperatorRefused(
                "select messages by id or by a filter (channel, status, kind, key, time)", "ids"
            )
        check_filter(selector, known_channels)
        if len(selector.ids) > bound:
            raise OperatorRefused(f"at most {bound} ids at once: select by a filter instead", "ids")
        statuses = rule.statuses(selector)
        Message = self.m.Message
        base = self.selection.where(replace(selector, statuses=()))
        eligible = base & Message.status.in_(list(statuses))

        def counts() -> tuple[int, dict[str, int], list[int]]:
            if _whole_channels(selector):  # "all failed on hie": the tallies have it
                scope: dict[str, int] = {}
                for (channel, status), n in self.tallies.counts().items():
                    if selector.channel in (None, channel):
                        scope[status] = scope.get(status, 0) + n
                matched = sum(scope.get(s, 0) for s in statuses)
                return matched, {s: n for s, n in scope.items() if s not in statuses}, []
            matched = Message.select().where(eligible).count()
            others = (
                Message.select(Message.status, pw.fn.COUNT(Message.id))
                .where(base & Message.status.not_in(list(statuses)))
                .group_by(Message.status)
            )
            return matched, {s: n for s, n in tuples(others)}, self._missing(selector.ids)

        if dry_run:

            def look() -> OperatorResult:
                matched, skipped, missing = counts()
                sample = Message.select(Message.id).where(eligible).order_by(Message.id)
                return OperatorResult(
                    skipped=skipped,
                    missing=missing,
                    matched=matched,
                    sample=[r[0] for r in tuples(sample.limit(SAMPLE))],
                    dry_run=True,
                )

            return self.unit.read(look)

        def work() -> OperatorResult:
            when = self.unit.now(now)
            matched, skipped, missing = counts()
            if matched > bound:
                operation = self.operations.start(
                    rule, replace(selector, statuses=statuses), actor, matched, skipped, when,
                    reason,
                )  # fmt: skip
                return OperatorResult(skipped=skipped, matched=matched, operation=operation)
            locked = Message.select(Message.id, Message.status).where(eligible)
            rows = sorted(tuples(self.sql.for_update(locked)))
            asked = selector if selector.ids else replace(selector, statuses=statuses)
            self.actions.change(
                rule, rows, actor, when, described(asked), filter_json(asked), reason
            )
            return OperatorResult(
                changed=[i for i, _ in rows], skipped=skipped, missing=missing, matched=len(rows)
            )

        return self.unit.write(work)

    def _missing(self, ids: Sequence[int]) -> list[int]:
        if not ids:
            return []
        Message = self.m.Message
        found = {r[0] for r in tuples(Message.select(Message.id).where(Message.id.in_(list(ids))))}
        return sorted(set(ids) - found)


def _whole_channels(selector: MessageFilter) -> bool:
    """A filter by channel (or none) and statuses only: its counts are the tallies'."""
    return not (
        selector.ids
        or selector.since
        or selector.until
        or selector.kind
        or selector.key_prefix
        or selector.searched
    )
