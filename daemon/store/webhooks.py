"""Partners' status callbacks: each kept once (per webhook and ``webhook-id``),
with what it changed and the answer given.

A callback is about one message of the webhook's channel, found by its key or
by the id the partner gave it (in the answer kept when it was sent). A mapped
status moves a ``sent`` message to ``confirmed`` or ``rejected`` the way a
status check does (``Tracking.settle_sent``), with its status event, in
the transaction that stores the receipt; a repeat of a ``webhook-id`` changes
nothing and is answered as the first one was.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from daemon.domain.jsonpointer import resolve, scalar_text
from daemon.domain.limits import PARTNER_TEXT_MAX, WEBHOOK_ID_MAX, storable, text_problem
from daemon.domain.webhooks import WebhookCall, WebhookOutcome, WebhookReceiptRow
from daemon.store.models import db_timestamp, tuples
from daemon.store.sql.base import EventRow
from daemon.store.tracking import Tracking
from daemon.store.unit import Unit

APPLIED = "applied"  # the message moved on, with a status event
UNCHANGED = "unchanged"  # the message is not sent (already settled, or not sent yet)
UNMAPPED_STATUS = "unmapped_status"  # a status the webhook does not map: recorded only
UNKNOWN_MESSAGE = "unknown_message"  # no message of the channel has that key or id
UNREADABLE = "unreadable"  # not JSON, or nothing at the webhook's pointers
RESULTS = (APPLIED, UNCHANGED, UNMAPPED_STATUS, UNKNOWN_MESSAGE, UNREADABLE)
HTTP_STATUS = {
    APPLIED: 200,
    UNCHANGED: 202,
    UNMAPPED_STATUS: 202,
    UNKNOWN_MESSAGE: 404,
    UNREADABLE: 400,
}
BODY_KEPT = 64 * 1024  # characters of a callback's body kept with its receipt
MAX_RECEIPTS = 10_000  # receipts one listing returns, at most
_PAGE = 500  # messages read at a time while looking for a partner's id
_PLAIN = re.compile(r"[ !#$%&'()*+,\-.0-9:;<=>?@A-Z\[\]^_`a-z{|}~]+")  # never escaped in JSON


def _text(value: str, limit: int) -> str:
    """Text a database keeps as it is (``storable``), at most ``limit`` long."""
    return (storable(value) or "")[:limit]


def _needle(ref: str) -> str | None:
    """The longest part of a partner's id that reads the same in any JSON text
    holding it (no quote, backslash or slash, which an encoder may escape):
    what a kept answer must contain to be a candidate."""
    runs = _PLAIN.findall(ref)
    return max(runs, key=len) if runs else None


class Webhooks:
    def __init__(self, unit: Unit, tracking: Tracking) -> None:
        self.unit = unit
        self.db = unit.db
        self.m = unit.models
        self.tracking = tracking

    def receive_webhook(self, call: WebhookCall, now: datetime | None = None) -> WebhookOutcome:
        """Store a partner's callback and do what it says, in one transaction:
        the receipt (a ``webhook-id`` already received for that webhook changes
        nothing and answers what the first one did), the message it names (by
        key on the channel, or by the partner's id), and, for a mapped status of
        a ``sent`` message, the move to ``confirmed`` or ``rejected`` with its
        status event. ``ValueError`` for a ``webhook-id`` that breaks the text
        rule (``text_problem``: the intake refuses one first)."""
        problem = text_problem(call.webhook_id, WEBHOOK_ID_MAX)
        if problem is not None:
            raise ValueError(f"webhook-id {problem}")
        WebhookReceipt = self.m.WebhookReceipt

        def work() -> WebhookOutcome:
            when = self.unit.now(now)
            receipt_id = self._receipt_insert(call, when)
            if receipt_id is None:
                return self._receipt_replay(call.webhook, call.webhook_id)
            result, message_id, answer = self._callback_apply(call, when)
            status = HTTP_STATUS[result]
            said = call.partner_status
            partner_status = None if said is None else _text(said, PARTNER_TEXT_MAX)
            WebhookReceipt.update(
                partner_status=partner_status,
                result=result,
                message=message_id,
                answer_status=status,
                answer=answer,
            ).where(WebhookReceipt.id == receipt_id).execute()
            return WebhookOutcome(receipt_id, result, status, answer, message_id, False)

        return self.unit.write(work)

    def webhook_receipts(
        self,
        webhook: str | None = None,
        limit: int = 100,
        result: str | None = None,
        before_id: int | None = None,
    ) -> list[WebhookReceiptRow]:
        """The latest receipts, newest first (of one webhook, with one result, older
        than ``before_id``)."""
        if not 1 <= limit <= MAX_RECEIPTS:
            raise ValueError(f"limit: 1 to {MAX_RECEIPTS}")
        WebhookReceipt = self.m.WebhookReceipt

        def work() -> list[WebhookReceiptRow]:
            query = WebhookReceipt.select()
            if webhook is not None:
                query = query.where(WebhookReceipt.webhook == webhook)
            if result is not None:
                query = query.where(WebhookReceipt.result == result)
            if before_id is not None:
                query = query.where(WebhookReceipt.id < before_id)
            return [
                WebhookReceiptRow(
                    r.id,
                    r.webhook,
                    r.webhook_id,
                    r.received_at,
                    r.partner_status,
                    r.result,
                    r.message_id,
                    r.answer_status,
                    r.answer,
                    r.body,
                    r.body_size,
                )
                for r in query.order_by(WebhookReceipt.id.desc()).limit(limit)
            ]

        return self.unit.read(work)

    # --- the parts of a receipt ----------------------------------------------------------

    def _receipt_insert(self, call: WebhookCall, now: datetime) -> int | None:
        """The new receipt's id, or None when the webhook-id was received before
        (on PostgreSQL a concurrent insert of it is waited for)."""
        p = self.db.param
        rows = self.unit.sql.rows(
            "INSERT INTO outboxd_webhook_receipt (webhook, webhook_id, received_at, body, "
            f"body_size, result, answer_status, answer) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, "
            f"{p}, {p}) ON CONFLICT (webhook, webhook_id) DO NOTHING RETURNING id",
            (
                call.webhook,
                call.webhook_id,
                db_timestamp(now),
                _text(call.body.decode("utf-8", "replace"), BODY_KEPT),
                len(call.body),
                "received",
                0,
                "{}",
            ),
        )
        return int(rows[0][0]) if rows else None

    def _receipt_replay(self, webhook: str, webhook_id: str) -> WebhookOutcome:
        WebhookReceipt = self.m.WebhookReceipt
        first = WebhookReceipt.get(
            (WebhookReceipt.webhook == webhook) & (WebhookReceipt.webhook_id == webhook_id)
        )
        return WebhookOutcome(
            first.id, first.result, first.answer_status, first.answer, first.message_id, True
        )

    def _callback_apply(
        self, call: WebhookCall, now: datetime
    ) -> tuple[str, int | None, dict[str, Any]]:
        """(result, message id, answer) of a new callback, its change made."""
        if call.problem is not None:
            at = {"field": call.field} if call.field is not None else {}
            return UNREADABLE, None, {"result": UNREADABLE, "error": call.problem, **at}
        found = self._callback_message(call)
        if found is None:
            return UNKNOWN_MESSAGE, None, {"result": UNKNOWN_MESSAGE}
        message_id, status = found
        answer: dict[str, Any] = {"message": message_id}
        details = {
            "partner_status": call.partner_status,
            "webhook": call.webhook,
            "webhook_id": call.webhook_id,
        }
        actor = f"webhook:{call.webhook}"
        if call.outcome not in ("confirmed", "rejected"):
            # a status on the way (PROCESSING): in the timeline, nothing moved
            self.unit.events([EventRow(message_id, status, status, actor, details)], now)
            return UNMAPPED_STATUS, message_id, {"result": UNMAPPED_STATUS, **answer}
        verdict: Literal["confirmed", "rejected"] = (
            "confirmed" if call.outcome == "confirmed" else "rejected"
        )
        event = self.tracking.settle_sent(message_id, verdict, actor, details, now)
        if event is None:
            return UNCHANGED, message_id, {"result": UNCHANGED, **answer, "status": status}
        self.unit.events([event], now)
        return APPLIED, message_id, {"result": APPLIED, **answer, "status": call.outcome}

    def _callback_message(self, call: WebhookCall) -> tuple[int, str] | None:
        """(id, status) of the channel's message the callback names, or None."""
        Message = self.m.Message
        if call.message_key is not None:
            found = tuples(
                Message.select(Message.id, Message.status)
                .where((Message.channel == call.channel) & (Message.key == call.message_key))
                .limit(1)
            )
            return (found[0][0], found[0][1]) if found else None
        if call.message_ref is None:
            return None
        return self._message_by_partner_id(call.channel, call.message_ref, call.ref_pointer)

    def _message_by_partner_id(
        self, channel: str, ref: str, ref_pointer: str
    ) -> tuple[int, str] | None:
        """The newest message of the channel whose kept answer has ``ref`` at
        ``ref_pointer``: the answers that contain the id's text are read (a
        message not sent yet has none), newest first."""
        Message = self.m.Message
        where = (Message.channel == channel) & Message.response.is_null(False)
        needle = _needle(ref)
        if needle is not None:
            where &= Message.response.contains(needle)
        below: int | None = None
        while True:
            page = where if below is None else where & (Message.id < below)
            rows = tuples(
                Message.select(Message.id, Message.status, Message.response)
                .where(page)
                .order_by(Message.id.desc())
                .limit(_PAGE)
            )
            for message_id, status, response in rows:
                try:
                    kept = json.loads(response)
                except (ValueError, RecursionError):
                    continue
                if scalar_text(resolve(kept, ref_pointer)) == ref:
                    return message_id, status
            if len(rows) < _PAGE:
                return None
            below = rows[-1][0]
