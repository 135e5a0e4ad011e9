"""The outbox's values as JSON: what ``--json`` prints, and what the control API
answers. Machine fields are ISO 8601 UTC; the human ones (``text``, ``*_hl7``)
are in the operator's words, their times in the configured zone."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from daemon.domain.clock import shown
from daemon.domain.views import (
    AuditView,
    EventView,
    MessagePage,
    MessageSummary,
    MessageTimeline,
    OperationView,
    OperatorResult,
    VisitView,
)
from daemon.operator.tracked import troubles
from daemon.operator.words import action_text, event_text, events_text, hl7_json


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def summary_json(m: MessageSummary) -> dict[str, Any]:
    return {
        "id": m.id,
        "channel": m.channel,
        "kind": m.kind,
        "key": m.key,
        "status": m.status,
        "attempts": m.attempts,
        "created_at": _iso(m.created_at),
        "updated_at": _iso(m.updated_at),
        "next_attempt_at": _iso(m.next_attempt_at),
        "sent_at": _iso(m.sent_at),
        "last_error": m.last_error,
    }


def page_json(page: MessagePage) -> dict[str, Any]:
    return {
        "items": [summary_json(m) for m in page.items],
        "next": page.next,
        "since": _iso(page.since),
    }


def event_json(e: EventView, zone: tzinfo | None = None, text: str | None = None) -> dict[str, Any]:
    out = {
        "id": e.id,
        "at": _iso(e.at),
        "from": e.from_status,
        "to": e.to_status,
        "actor": e.actor,
        "details": e.details,
    }
    if zone is not None:
        out["at_text"] = shown(e.at, zone)
        out["text"] = text if text is not None else event_text(e, zone)
    return out


def audit_json(a: AuditView, zone: tzinfo | None = None) -> dict[str, Any]:
    out = {
        "id": a.id,
        "at": _iso(a.at),
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "details": a.details,
        "changed": a.changed,
    }
    if zone is not None:
        out["at_text"] = shown(a.at, zone)
        out["text"] = action_text(a)
    return out


def visit_json(visit: VisitView, zone: tzinfo | None = None) -> dict[str, Any]:
    """A visit as ``outboxd visit --json`` and ``GET /api/v1/visits/…`` show it;
    ``troubles``: each step held, failed or cancelled, and why."""
    out = {
        "kodebooking": visit.kodebooking,
        "source": visit.source,
        "task_progress": visit.task_progress,
        "created_at": _iso(visit.created_at),
        "updated_at": _iso(visit.updated_at),
        "troubles": troubles(visit),
    }
    if zone is not None:
        out["updated_at_text"] = shown(visit.updated_at, zone)
    return out


def payload_text(payload: bytes) -> str | None:
    """The payload as text when it is UTF-8 (HL7, JSON), else None."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def timeline_json(t: MessageTimeline, zone: tzinfo | None = None) -> dict[str, Any]:
    """The message whole; with ``zone``, also what a person reads: each event and
    action in words (``text``, ``at_text``), the payload and the peer's answer as
    HL7 segments with their fields' positions when they are HL7 v2 (``payload_hl7``,
    ``response_hl7``: ``[{"segment", "text", "fields": [[position, value], …]}]``)."""
    text = payload_text(t.payload)
    out = {
        "id": t.id,
        "channel": t.channel,
        "kind": t.kind,
        "key": t.key,
        "status": t.status,
        "attempts": t.attempts,
        "next_attempt_at": _iso(t.next_attempt_at),
        "lease_owner": t.lease_owner,
        "lease_expires_at": _iso(t.lease_expires_at),
        "last_error": t.last_error,
        "response": t.response,
        "after_id": t.after_id,
        "group_key": t.group_key,
        "visit_id": t.visit_id,
        "created_at": _iso(t.created_at),
        "updated_at": _iso(t.updated_at),
        "sent_at": _iso(t.sent_at),
        "payload_size": len(t.payload),
        "payload": text,
        "events": [
            event_json(e, zone, said)
            for e, said in zip(
                t.events,
                events_text(t.events, zone) if zone else [None] * len(t.events),
                strict=True,
            )
        ],
        "actions": [audit_json(a, zone) for a in t.actions],
    }
    if zone is not None:
        out["timezone"] = str(zone)
        out["payload_hl7"] = hl7_json(text)
        out["response_hl7"] = hl7_json(t.response)
    return out


def result_json(r: OperatorResult) -> dict[str, Any]:
    return {
        "dry_run": r.dry_run,
        "matched": r.matched,
        "changed": r.changed,
        "sample": r.sample,
        "skipped": r.skipped,
        "missing": r.missing,
        "operation": r.operation,
    }


def operation_json(o: OperationView) -> dict[str, Any]:
    return {
        "id": o.id,
        "action": o.action,
        "filter": o.filter,
        "actor": o.actor,
        "state": o.state,
        "matched": o.matched,
        "done": o.done,
        "skipped": o.skipped,
        "result": o.result,
        "started_at": _iso(o.started_at),
        "finished_at": _iso(o.finished_at),
    }
