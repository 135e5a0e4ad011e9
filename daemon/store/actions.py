"""The rules of the operator actions (what retry, cancel and resend take, and
what they do to a message) and the one way they change messages: under lock,
with a status event each and the audit entry, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.domain.selection import MessageFilter, OperatorRefused
from daemon.domain.statuses import CANCELLED, CONFIRMED, FAILED, PENDING, REJECTED, SENDING, SENT
from daemon.store.audit import Audit
from daemon.store.models import tuples
from daemon.store.sql.base import CHUNK, EventRow, chunked
from daemon.store.unit import Unit


@dataclass(frozen=True)
class Rule:
    """An action: the statuses it takes (``allowed``), those it takes by a
    filter that names none (``by_filter``; empty: a filter must name them), the
    status it writes, and where each status it does not take belongs."""

    action: str
    allowed: tuple[str, ...]
    by_filter: tuple[str, ...]
    target: str
    elsewhere: dict[str, str]

    def statuses(self, selector: MessageFilter) -> tuple[str, ...]:
        """The statuses this action takes for ``selector``; refuses one it cannot."""
        if not selector.statuses:
            if selector.ids:
                return self.allowed
            if not self.by_filter:
                raise OperatorRefused(
                    f"{self.action} by a filter needs the statuses to take "
                    f"({', '.join(self.allowed)})"
                )
            return self.by_filter
        for status in selector.statuses:
            if status not in self.allowed:
                where = self.elsewhere.get(status, "")
                raise OperatorRefused(
                    f"{self.action} does not take {status} messages "
                    f"(it takes {', '.join(self.allowed)}){where}"
                )
        return tuple(dict.fromkeys(selector.statuses))

    def changes(self, now: datetime) -> dict[str, Any]:
        if self.target == CANCELLED:
            return {"status": CANCELLED}
        due = {"status": PENDING, "attempts": 0, "next_attempt_at": now}
        return {**due, "sent_at": None} if self.action == "resend" else due


_BEING_SENT = ": a message being sent is never touched"
RETRY = Rule(
    "retry",
    (FAILED, CANCELLED, PENDING),
    (FAILED,),
    PENDING,
    {s: ": send it again with resend" for s in (SENT, CONFIRMED, REJECTED)}
    | {SENDING: _BEING_SENT},
)
CANCEL = Rule(
    "cancel",
    (PENDING, FAILED),
    (PENDING,),
    CANCELLED,
    {SENT: ": it was sent", CONFIRMED: ": it was sent", SENDING: _BEING_SENT},
)
RESEND = Rule(
    "resend",
    (SENT, CONFIRMED, REJECTED),
    (),
    PENDING,
    {s: ": it was not sent; use retry" for s in (FAILED, CANCELLED, PENDING)}
    | {SENDING: _BEING_SENT},
)
RULES = {rule.action: rule for rule in (RETRY, CANCEL, RESEND)}


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
    ) -> int:
        """Apply ``rule`` to ``rows`` (id, status), locked by the caller: the
        audit entry first (its id goes in every status event), then the rows,
        their events, and a wake-up for the dispatchers. Returns the audit id."""
        audit_id = self.audit.entry(actor, rule.action, target, details, len(rows), now)
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
