"""What an alert notification says, in an operator's words: what happened, what the
rule watches, since when (in the configured zone, labelled), which machine noticed,
and where to look on the admin page."""

from __future__ import annotations

import socket
from datetime import tzinfo

from daemon.domain.alerts import Transition
from daemon.domain.clock import shown

# what each rule watches, in words (``daemon.notify.rules``)
WATCHES = {
    "run_failed": "the latest run of a schedule failed or was interrupted, its retries done",
    "fire_missed": "fires of a schedule were missed",
    "no_success": "a schedule has not succeeded for too long",
    "messages_failed": "messages of a channel ended failed",
    "breaker_open": "a channel's circuit breaker has been open too long",
    "queue_age": "a channel's oldest pending message is too old",
}
SCHEDULE_RULES = ("run_failed", "fire_missed", "no_success")
WILDCARDS = ("0.0.0.0", "::", "")


def page_url(host: str, port: int, when: str, subject: str) -> str:
    """The admin page's view of the alert's subject: the schedules, or the channel's
    failed or pending messages. A control API on every address is named by this
    machine's name."""
    name = socket.gethostname() if host in WILDCARDS else host
    base = f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"
    if when in SCHEDULE_RULES:
        return base + "#schedules"
    status = "failed" if when == "messages_failed" else "pending"
    return base + (f"#messages?channel={subject}&status={status}" if subject else "#overview")


def alert_message(
    rule: str,
    when: str,
    change: Transition,
    zone: tzinfo,
    page: str,
    cleared_by: str | None = None,
) -> tuple[str, str]:
    """(subject, text) of one notification; a resolution says what cleared the
    condition (``cleared_by``: ``daemon.notify.rules.resolution``), then what it was."""
    resolved = change.event == "resolved"
    word = "resolved" if resolved else "alert"
    subject = f"outboxd {word}: {rule}: {change.subject}"
    watches = WATCHES.get(when, when)
    what = change.details or (f"no longer: {watches}" if resolved else watches)
    if resolved and cleared_by:
        was = f"\n\nit was: {change.details}" if change.details else ""
        what = f"resolved: {cleared_by}{was}"
    named = f"rule {rule} (when: {when})" if rule != when else f"rule {rule}"
    since = "cleared at" if resolved else "since"
    text = (
        f"{what}\n\n"
        f"{named}: {watches}\n"
        f"{change.event} {since} {shown(change.since, zone)}\n"
        f"noticed on {socket.gethostname()}\n"
        f"look: {page}\n"
    )
    return subject, text
