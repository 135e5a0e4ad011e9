"""The rules of the operator actions on messages: what retry, cancel and resend
take, and what each makes of a message. A message being sent (``sending``,
under a dispatcher's lease) is taken by none of them: it is never touched."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.domain.selection import MessageFilter, OperatorRefused
from daemon.domain.statuses import CANCELLED, CONFIRMED, FAILED, PENDING, REJECTED, SENDING, SENT


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
        """The statuses this action takes for ``selector``; refuses one it cannot
        (field ``status``)."""
        if not selector.statuses:
            if selector.ids:
                return self.allowed
            if not self.by_filter:
                raise OperatorRefused(
                    f"{self.action} by a filter needs the statuses to take "
                    f"({', '.join(self.allowed)})",
                    "status",
                )
            return self.by_filter
        for status in selector.statuses:
            if status not in self.allowed:
                where = self.elsewhere.get(status, "")
                raise OperatorRefused(
                    f"{self.action} does not take {status} messages "
                    f"(it takes {', '.join(self.allowed)}){where}",
                    "status",
                )
        return tuple(dict.fromkeys(selector.statuses))

    def changes(self, now: datetime) -> dict[str, Any]:
        """The columns the action writes on each message it takes."""
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
