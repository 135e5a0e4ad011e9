"""What the alert rules are judged on, and the changes of an alert's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Transition:
    rule: str
    subject: str
    event: str  # "firing" (first, or again after the window) or "resolved"
    details: str | None
    since: datetime


@dataclass
class AlertInputs:
    """The facts the rules judge, read at one moment."""

    now: datetime
    # schedule → (how the latest fire whose runs are done ended, its error, a retry to come)
    last_outcomes: dict[str, tuple[str, str | None, bool]] = field(default_factory=dict)
    last_fire: dict[str, datetime] = field(default_factory=dict)  # that fire's time
    last_success: dict[str, datetime | None] = field(default_factory=dict)  # per schedule
    schedule_since: dict[str, datetime] = field(default_factory=dict)  # created or changed
    missed: dict[str, int] = field(default_factory=dict)  # per schedule, in the window
    failed_messages: dict[str, int] = field(default_factory=dict)  # per channel, in the window
    oldest_pending: dict[str, datetime] = field(default_factory=dict)  # per channel
    breakers_open: dict[str, datetime] = field(default_factory=dict)  # per channel: since


@dataclass(frozen=True)
class NotificationRow:
    """A notification sent (or tried): the rule and its subject, the event, the
    target, whether it took it and its answer, the subject line and text."""

    id: int
    rule: str
    subject: str
    event: str  # firing | resolved | report
    target: str
    ok: bool
    answer: str | None
    at: datetime
    title: str | None
    text: str | None
