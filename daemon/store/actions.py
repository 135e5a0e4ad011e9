"""The one way the operator actions change messages: under lock, with a status
event each and the audit entry, in the caller's transaction. What each action
takes and writes is its rule's (``daemon.domain.actions``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from daemon.domain.actions import CANCEL, RESEND, RETRY, RULES, Rule
from daemon.domain.statuses import PENDING
from daemon.store.base import CHUNK, EventRow, StoreBase, chunked
from daemon.store.models import Message, StatusCheck


class ActionBase(StoreBase):
    def _change(
        self,
        rule: Rule,
        rows: Sequence[tuple[int, str]],
        actor: str,
        now: datetime,
        target: str,
        details: dict[str, Any],
    ) -> int:
        """Apply ``rule`` to ``rows`` (id, status), locked by the caller: the
        audit entry first (its id goes in every status event), then the rows,
        their events, and a wake-up for the dispatchers. Returns the audit id."""
        audit_id = self._audit(actor, rule.action, target, details, len(rows), now)
        if not rows:
            return audit_id
        ids = [i for i, _ in rows]
        changes = rule.changes(now)
        for chunk in chunked(ids):
            Message.update(
                lease_owner=None, lease_expires_at=None, updated_at=now, **changes
            ).where(Message.id.in_(list(chunk))).execute()
            if rule.action == "resend":  # its remote status is checked afresh
                StatusCheck.delete().where(StatusCheck.message.in_(list(chunk))).execute()
        event = {"action": rule.action, "audit": audit_id}
        if "operation" in details:
            event["operation"] = details["operation"]
        self._add_events([EventRow(i, s, rule.target, actor, event) for i, s in rows], now)
        if rule.target == PENDING:
            self._notify(
                r[0]
                for r in Message.select(Message.channel)
                .where(Message.id.in_(ids[:CHUNK]))
                .distinct()
                .tuples()
            )
        return audit_id


__all__ = ["CANCEL", "RESEND", "RETRY", "RULES", "ActionBase", "Rule"]
