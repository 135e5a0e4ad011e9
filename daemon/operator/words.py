"""What the outbox says in an operator's words, the same for the CLI, the API's
human fields and the page: a status event as a sentence ("attempt 2 failed:
127.0.0.1:2575 answered AR: …; next at 10:42:13 WIB"), an operator action, a
payload or a peer's answer as HL7 segments with each field's position. Every
time in the configured zone, labelled with it (``daemon.domain.clock.shown``)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from daemon.domain.clock import shown
from daemon.domain.views import AuditView, EventView
from daemon.hl7 import segments

ACTIONS = {"retry": "retried", "cancel": "cancelled", "resend": "sent again"}


def _time(text: Any, zone: tzinfo) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return shown(datetime.fromisoformat(text), zone, date=False)
    except ValueError:
        return None


def events_text(events: list[EventView], zone: tzinfo) -> list[str]:
    """A message's events in order, each as a sentence: an outcome that does not
    say which attempt it was is the one its sending event began."""
    out, attempt = [], None
    for e in events:
        d = e.details if isinstance(e.details, dict) else {}
        if (e.from_status, e.to_status) == ("pending", "sending"):
            attempt = d.get("attempt")
        out.append(event_text(e, zone, attempt if e.from_status == "sending" else None))
    return out


def event_text(e: EventView, zone: tzinfo, attempt_sent: int | None = None) -> str:
    """One status event as a sentence (without its time); ``attempt_sent``: the
    attempt it ends, when its details do not say."""
    d: dict[str, Any] = dict(e.details) if isinstance(e.details, dict) else {}
    change = (e.from_status, e.to_status)
    attempt = d.get("attempt", attempt_sent)
    nth = f"attempt {attempt}" if isinstance(attempt, int) else "the attempt"
    error = d.get("error")
    if "action" in d:
        verb = ACTIONS.get(str(d["action"]), str(d["action"]))
        text = f"{verb} by {e.actor}: now {e.to_status}"
        return text + (f" (audit {d['audit']})" if "audit" in d else "")
    if e.from_status is None:
        return f"stored by {e.actor}: {e.to_status}"
    if change == ("pending", "sending"):
        return f"{nth} began: sending (by {e.actor})"
    if change == ("sending", "sent"):
        return f"{nth} delivered: the peer accepted it"
    if d.get("released"):
        return "released unsent at a shutdown: due again now"
    if "expired_at" in d:
        return f"the lease of {d.get('owner', '?')} ran out: pending again"
    if change == ("sending", "pending"):
        next_at = _time(d.get("retry_at"), zone)
        text = f"{nth} failed: {error}" if error else f"{nth} failed"
        if d.get("counted") is False:
            text += " (not counted)"
        return text + (f"; next at {next_at}" if next_at else "")
    if change == ("sending", "failed"):
        why = d.get("decision")
        text = f"{nth} failed for good: {error}" if error else f"{nth} failed for good"
        return text + (f" ({why})" if why and why not in str(error) else "")
    if d.get("flagged"):
        return f"still open after {d.get('check', '?')} checks: flagged for an operator"
    if "partner_status" in d:
        said = f"the partner said {d['partner_status']}"
        check = f" (check {d['check']})" if "check" in d else ""
        if e.from_status == e.to_status:
            return f"{said}{check}: still {e.to_status}"
        return f"{said}{check}: {e.to_status}"
    text = f"{e.from_status} → {e.to_status} by {e.actor}"
    rest = [f"{k} {v}" for k, v in sorted(d.items())]
    return text + (": " + ", ".join(rest) if rest else "")


def action_text(a: AuditView) -> str:
    target = f" {a.target}" if a.target else ""
    return f"{a.action} by {a.actor}:{target}, {a.changed} changed (audit {a.id})"


def hl7_json(text: str | None) -> list[dict[str, Any]] | None:
    """An HL7 v2 text as segments, each ``{"segment", "text", "fields": [[position,
    value], …]}`` (empty fields left out), or None when it is not HL7 v2."""
    found = segments(text) if text else None
    if not found:
        return None
    return [
        {
            "segment": s.name,
            "text": s.text,
            "fields": [[f.position, f.value] for f in s.fields if f.value],
        }
        for s in found
    ]


def hl7_lines(text: str | None, by_field: bool) -> list[str] | None:
    """An HL7 v2 text one segment a line (``by_field``: then each non-empty field
    on a line of its own, its position first), or None when it is not HL7 v2."""
    found = segments(text) if text else None
    if not found:
        return None
    lines: list[str] = []
    for s in found:
        lines.append(s.text)
        if by_field:
            lines += [f"    {f.position:<8} {f.value}" for f in s.fields if f.value]
    return lines
