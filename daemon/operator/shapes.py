"""The outbox's values as JSON: what ``--json`` prints, and what the control API
answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


def event_json(e: EventView) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _iso(e.at),
        "from": e.from_status,
        "to": e.to_status,
        "actor": e.actor,
        "details": e.details,
    }


def audit_json(a: AuditView) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": _iso(a.at),
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "details": a.details,
        "changed": a.changed,
    }


def visit_json(visit: VisitView) -> dict[str, Any]:
    """A visit as ``outboxd visit --json`` and ``GET /api/v1/visits/…`` show it."""
    return {
        "kodebooking": visit.kodebooking,
        "source": visit.source,
        "task_progress": visit.task_progress,
        "created_at": _iso(visit.created_at),
        "updated_at": _iso(visit.updated_at),
    }


def payload_text(payload: bytes) -> str | None:
    """The payload as text when it is UTF-8 (HL7, JSON), else None."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def timeline_json(t: MessageTimeline) -> dict[str, Any]:
    return {
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
        "payload": payload_text(t.payload),
        "events": [event_json(e) for e in t.events],
        "actions": [audit_json(a) for a in t.actions],
    }


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
