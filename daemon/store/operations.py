"""Bulk operator actions: a filter matching more than the bound is done in
batches, each its own transaction (so delivery is not held up for long), with
its progress in ``outboxd_operation``. ``retry``/``cancel``/``resend`` start one;
``advance_operation`` does the next batch, until it is finished."""

from __future__ import annotations

from datetime import datetime

import peewee as pw

from daemon.domain.actions import RULES, Rule
from daemon.domain.limits import BULK_BATCH
from daemon.domain.selection import MessageFilter
from daemon.domain.statuses import OPERATION_FINISHED, OPERATION_RUNNING
from daemon.domain.views import OperationView
from daemon.store.actions import Actions
from daemon.store.models import Operation, tuples
from daemon.store.selection import Selection, described, filter_from_json, filter_json
from daemon.store.unit import Unit

BATCH = BULK_BATCH  # messages a batch changes


class Operations:
    def __init__(self, unit: Unit, actions: Actions, selection: Selection) -> None:
        self.unit = unit
        self.sql = unit.sql
        self.m = unit.models
        self.actions = actions
        self.selection = selection

    def start(
        self,
        rule: Rule,
        selector: MessageFilter,
        actor: str,
        matched: int,
        skipped: dict[str, int],
        now: datetime,
        reason: str | None = None,
    ) -> int:
        """Record a bulk action, to be done by ``advance_operation``: the messages
        there are now (up to the newest id) that match when their batch comes
        (the operator's ``reason`` kept with the filter, for each batch's audit)."""
        Message, Operation = self.m.Message, self.m.Operation
        newest = Message.select(pw.fn.MAX(Message.id)).scalar() or 0
        return int(
            Operation.insert(
                action=rule.action,
                filter={**filter_json(selector), **({"reason": reason} if reason else {})},
                actor=actor,
                state=OPERATION_RUNNING,
                matched=matched,
                done=0,
                skipped=skipped,
                position=0,
                upto=newest,
                started_at=now,
            ).execute()
        )

    def advance_operation(
        self, operation_id: int, batch: int = BATCH, now: datetime | None = None
    ) -> OperationView | None:
        """Do the next batch of a bulk operation (up to ``batch`` messages, in id
        order, those that still match), with its audit entry; finished when none
        are left. None when there is no such operation; a finished one as it is."""
        if batch < 1:
            raise ValueError("a batch is one message or more")
        Message, Operation = self.m.Message, self.m.Operation

        def work() -> OperationView | None:
            when = self.unit.now(now)
            query = Operation.select().where(Operation.id == operation_id)
            op = self.sql.for_update(query).first()
            if op is None or op.state != OPERATION_RUNNING:
                return None if op is None else _view(op)
            rule = RULES[op.action]
            selector = filter_from_json(op.filter)
            locked = (
                Message.select(Message.id, Message.status)
                .where(
                    self.selection.where(selector)
                    & (Message.id > op.position)
                    & (Message.id <= op.upto)
                )
                .order_by(Message.id)
                .limit(batch)
            )
            rows = tuples(self.sql.for_update(locked))
            if rows:
                details = {**op.filter, "operation": op.id, "position": op.position}
                reason = details.pop("reason", None)
                target = f"operation {op.id}: {described(selector)}"
                self.actions.change(rule, rows, op.actor, when, target, details, reason)
                op.done += len(rows)
                op.position = rows[-1][0]
            if len(rows) < batch:
                op.state = OPERATION_FINISHED
                op.finished_at = when
                op.result = {"changed": op.done, "skipped": op.skipped or {}}
            op.save()
            return _view(op)

        return self.unit.write(work)

    def operation(self, operation_id: int) -> OperationView | None:
        """A bulk operation as it stands (None: no such operation)."""
        Operation = self.m.Operation

        def work() -> OperationView | None:
            op = Operation.select().where(Operation.id == operation_id).first()
            return None if op is None else _view(op)

        return self.unit.read(work)

    def operations(self, limit: int = 20, running: bool = False) -> list[OperationView]:
        """The bulk operations, newest first (``running``: those not finished)."""
        Operation = self.m.Operation

        def work() -> list[OperationView]:
            query = Operation.select().order_by(Operation.id.desc()).limit(limit)
            if running:
                query = query.where(Operation.state == OPERATION_RUNNING)
            return [_view(op) for op in query]

        return self.unit.read(work)


def _view(op: Operation) -> OperationView:
    return OperationView(
        id=op.id,
        action=op.action,
        filter={k: v for k, v in op.filter.items() if k != "reason"},
        actor=op.actor,
        state=op.state,
        matched=op.matched,
        done=op.done,
        skipped=op.skipped or {},
        result=op.result,
        started_at=op.started_at,
        finished_at=op.finished_at,
    )
