"""What an operator reads of what happens after sending, the same for the CLI,
the API and the page: the visits that cannot go on (a step held, failed or
cancelled, and why), and the partners' callbacks as they were received (the
webhook receipts, kept for the operator: those naming no message among them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from daemon.domain.clock import shown
from daemon.domain.errors import Refused
from daemon.domain.limits import MAX_PAGE
from daemon.domain.tracking import VISIT_TROUBLES
from daemon.domain.views import VisitView
from daemon.domain.webhooks import WebhookReceiptRow
from daemon.operator.base import Operator

RECEIPT_RESULTS = ("applied", "unchanged", "unmapped_status", "unknown_message", "unreadable")
CANCELLED_STEP = "99"  # BPJS: the booking cancelled


def troubles(visit: VisitView) -> list[dict[str, Any]]:
    """Each step that keeps the visit from going on: ``{"step", "status", "why"}``."""
    found = []
    for step, entry in visit.task_progress.items():
        status = str(entry.get("status", ""))
        if status in ("held", "failed", "cancelled", "rejected"):
            why = entry.get("reason") or {
                "failed": "its message failed",
                "cancelled": "its message was cancelled by an operator",
                "rejected": "the partner rejected its message",
            }.get(status, "")
            found.append({"step": step, "status": status, "why": str(why)})
        elif step == CANCELLED_STEP:
            why = f"the booking was cancelled (task 99 {status or 'reported'})"
            found.append({"step": step, "status": "cancelled", "why": why})
    return sorted(found, key=lambda t: (t["step"] != "add", len(t["step"]), t["step"]))


async def troubled_visits(
    op: Operator,
    kinds: Sequence[str] = VISIT_TROUBLES,
    limit: int = 50,
    before: int | None = None,
    source: str | None = None,
) -> tuple[list[tuple[int, VisitView]], int | None]:
    """A page of the visits with a step held, failed or cancelled (``kinds``),
    newest first, and the cursor of the next page."""
    if source is not None and source not in op.settings.sources:
        known = ", ".join(sorted(op.settings.sources)) or "none configured"
        raise Refused(f"unknown source {source!r} (sources: {known})", "usage", "source")
    return await op.store.troubled_visits(tuple(kinds), limit, before, source)


async def receipts(
    op: Operator,
    webhook: str | None = None,
    result: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[WebhookReceiptRow]:
    """The partners' callbacks, newest first: of one webhook, with one result."""
    if webhook is not None and webhook not in op.settings.webhooks:
        known = ", ".join(sorted(op.settings.webhooks)) or "none configured"
        raise Refused(f"unknown webhook {webhook!r} (webhooks: {known})", "usage", "webhook")
    if result is not None and result not in RECEIPT_RESULTS:
        raise Refused(
            f"a receipt's result is one of {', '.join(RECEIPT_RESULTS)}", "usage", "result"
        )
    if not 1 <= limit <= MAX_PAGE:
        raise Refused(f"limit must be 1 to {MAX_PAGE}, not {limit}", "usage", "limit")
    return await op.store.webhook_receipts(webhook, limit, result, before)


def receipt_json(r: WebhookReceiptRow, zone: tzinfo | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "webhook": r.webhook,
        "webhook_id": r.webhook_id,
        "received_at": r.received_at.isoformat(),
        "partner_status": r.partner_status,
        "result": r.result,
        "message_id": r.message_id,
        "answer_status": r.answer_status,
        "answer": r.answer,
        "body": r.body,
        "body_size": r.body_size,
    }
    if zone is not None:
        out["received_at_text"] = shown(r.received_at, zone)
    return out


def receipt_line(r: WebhookReceiptRow, zone: tzinfo) -> str:
    about = f"message {r.message_id}" if r.message_id else "no message"
    said = f", said {r.partner_status}" if r.partner_status else ""
    return (
        f"{r.id:>6}  {shown(r.received_at, zone)}  {r.webhook}  {r.result} "
        f"(answered {r.answer_status}){said}, {about}; webhook-id {r.webhook_id}"
    )


def visit_line(visit: VisitView, zone: tzinfo) -> str:
    why = "; ".join(f"{t['step']} {t['status']}: {t['why']}" for t in troubles(visit))
    return f"{visit.kodebooking} ({visit.source}), updated {shown(visit.updated_at, zone)}: {why}"
