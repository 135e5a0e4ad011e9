"""The rules of the operator actions (what retry, cancel and resend take, and
what they do to a message) and the one way they change messages: under lock,
with a status event each and the audit entry, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from daemon.domain.actions import Rule
from daemon.domain.statuses import PENDING
from daemon.store.audit import Audit
from daemon.store.models import tuples
from daemon.store.sql.base import CHUNK, EventRow, chunked
from daemon.store.unit import Unit


class Actions:
    """The one way operator actions change messages."""

    def __init__(self, unit: Unit, audit: Audit) -> None:
        self.unit = unit
        self.m = unit.models
        self.audit = audit

    def change(
        self,
        rule: Rule,
        rows: Sequence[tuple[int, str]],
        actor: str,
        now: datetime,
        target: str,
        details: dict[str, Any],
        reason: str | None = None,
    ) -> int:
        """Apply ``rule`` to ``rows`` (id, status), locked by the caller: the
        audit entry first (its id goes in every status event; ``reason`` in its
        details), then the rows, their events, and a wake-up for the dispatchers.
        Returns the audit id."""
        audit_id = self.audit.entry(actor, rule.action, target, details, len(rows), now, reason)
        if not rows:
            return audit_id
        Message, StatusCheck = self.m.Message, self.m.StatusCheck
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
        self.unit.events([EventRow(i, s, rule.target, actor, event) for i, s in rows], now)
        if rule.target == PENDING:
            query = Message.select(Message.channel).where(Message.id.in_(ids[:CHUNK])).distinct()
            self.unit.notify(r[0] for r in tuples(query))
        return audit_id
