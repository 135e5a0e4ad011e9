"""Remote status tracking: which sent messages are due a status check at their
partner, and what the answers change. A partner's ``confirmed`` or ``rejected``
moves the message on from ``sent`` with a status event, in the transaction that
records the check; a status it reports on the way (``PROCESSING``) is a ``sent →
sent`` event when it is new; a message still open after ``max_checks`` is flagged
for an operator, with an event saying so."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from peewee import JOIN

from daemon.domain.statuses import CONFIRMED, REJECTED, SENT
from daemon.domain.tracking import CheckResult, DueCheck
from daemon.store.models import tuples
from daemon.store.sql.base import EventRow, chunked
from daemon.store.unit import Unit


class Tracking:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.m = unit.models

    def due_status_checks(
        self,
        channel: str,
        every: float,
        max_checks: int,
        limit: int = 100,
        now: datetime | None = None,
    ) -> list[DueCheck]:
        """Sent messages of the channel due a check: never checked, or last
        checked ``every`` seconds ago or more, not flagged, oldest first."""
        Message, StatusCheck = self.m.Message, self.m.StatusCheck

        def work() -> list[DueCheck]:
            when = self.unit.now(now)
            query = (
                Message.select(Message.id, Message.key, Message.response, StatusCheck.checks)
                .join(
                    StatusCheck, join_type=JOIN.LEFT_OUTER, on=(StatusCheck.message == Message.id)
                )
                .where(
                    (Message.channel == channel)
                    & (Message.status == SENT)
                    & (
                        StatusCheck.message.is_null()
                        | (
                            (StatusCheck.flagged == False)  # noqa: E712 - SQL
                            & (StatusCheck.checked_at <= when - timedelta(seconds=every))
                            & (StatusCheck.checks < max_checks)
                        )
                    )
                )
                .order_by(Message.id)
                .limit(limit)
            )
            return [
                DueCheck(i, key, response, checks or 0)
                for i, key, response, checks in tuples(query)
            ]

        return self.unit.read(work)

    def record_status_checks(
        self,
        results: Sequence[CheckResult],
        max_checks: int,
        actor: str,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Write what the partner said of each message: confirmed or rejected
        (from ``sent``, with a status event), or still open (flagged once it was
        checked ``max_checks`` times). Answers counts by what happened."""
        StatusCheck = self.m.StatusCheck

        def work() -> dict[str, int]:
            when = self.unit.now(now)
            counts = {"confirmed": 0, "rejected": 0, "open": 0, "flagged": 0}
            ids = [r.id for r in results]
            current = {
                row.message_id: row
                for chunk in chunked(ids)
                for row in StatusCheck.select().where(StatusCheck.message.in_(list(chunk)))
            }
            events: list[EventRow] = []
            for result in results:
                previous = current.get(result.id)
                checks = (previous.checks if previous else 0) + 1
                flagged = result.verdict == "open" and checks >= max_checks
                values = {
                    "checks": checks,
                    "checked_at": when,
                    "answer": result.answer,
                    "flagged": flagged,
                }
                if previous is None:
                    StatusCheck.insert(message=result.id, **values).execute()
                else:
                    StatusCheck.update(**values).where(StatusCheck.message == result.id).execute()
                if result.verdict == "open":
                    counts["flagged" if flagged else "open"] += 1
                    # the partner's intermediate statuses in the timeline: each new
                    # one (not every check), and the flag once it is raised
                    said = {"partner_status": result.answer, "check": checks}
                    if previous is None or previous.answer != result.answer:
                        events.append(EventRow(result.id, SENT, SENT, actor, said))
                    if flagged and not (previous is not None and previous.flagged):
                        events.append(
                            EventRow(result.id, SENT, SENT, actor, {**said, "flagged": True})
                        )
                    continue
                details = {"partner_status": result.answer, "check": checks}
                event = self.settle_sent(result.id, result.verdict, actor, details, when)
                if event is not None:
                    counts[result.verdict] += 1
                    events.append(event)
            self.unit.events(events, when)
            return counts

        return self.unit.write(work)

    def settle_sent(
        self,
        message_id: int,
        verdict: Literal["confirmed", "rejected"],
        actor: str,
        details: dict[str, Any],
        now: datetime,
    ) -> EventRow | None:
        """Move a ``sent`` message to what its partner said became of it, inside
        the caller's unit of work; the status event to write, or None when the
        message is not ``sent`` (already settled, not sent yet) and nothing moved."""
        status = CONFIRMED if verdict == "confirmed" else REJECTED
        Message = self.m.Message
        moved = (
            Message.update(status=status, updated_at=now)
            .where((Message.id == message_id) & (Message.status == SENT))
            .execute()
        )
        return EventRow(message_id, SENT, status, actor, details) if moved else None
