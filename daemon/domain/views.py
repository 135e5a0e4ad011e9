"""What the store answers operators: results of actions, listings, timelines,
stats, visits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class OperatorResult:
    """What an operator action did, or (``dry_run``) would do. ``matched``: how many
    change (or would); ``skipped``: matched, but left as they are, by status
    (``sending``: being sent, under a lease). A filter matching more than the
    bound starts a bulk ``operation`` instead: ``changed`` is then empty and
    ``advance_operation`` does the work a batch at a time."""

    changed: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # matched, but in this status
    missing: list[int] = field(default_factory=list)  # asked for by id, not found
    matched: int = 0
    sample: list[int] = field(default_factory=list)  # dry run: some of the ids that would change
    dry_run: bool = False
    operation: int | None = None  # the bulk operation started for it


@dataclass(frozen=True)
class OperationView:
    """A bulk operator action, done in batches: ``state`` running or finished;
    ``done`` of ``matched`` changed so far; ``result`` once finished."""

    id: int
    action: str
    filter: dict[str, Any]
    actor: str
    state: str
    matched: int
    done: int
    skipped: dict[str, int]
    result: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state != "running"


@dataclass(frozen=True)
class MessageSummary:
    """A message as a listing shows it (no payload)."""

    id: int
    channel: str
    kind: str
    key: str
    status: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class MessagePage:
    """One page of a listing, newest first; ``next`` is the cursor of the page
    after it (None: this is the last); ``since``: the creation time the listing
    starts at (the default window when none was asked for; None: a search of
    every message stored)."""

    items: list[MessageSummary]
    next: str | None
    since: datetime | None


@dataclass(frozen=True)
class EventView:
    """A status event: a change of status, by whom, with what it says (the
    attempt's error, the peer's response, the operator action)."""

    id: int
    at: datetime
    from_status: str | None
    to_status: str
    actor: str
    details: dict[str, Any] | None


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any] | None
    changed: int


@dataclass(frozen=True)
class MessageTimeline:
    """One message whole: its fields, its payload, every status event in order,
    and the operator actions that changed it."""

    id: int
    channel: str
    kind: str
    key: str
    status: str
    attempts: int
    payload: bytes
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    response: str | None
    after_id: int | None
    group_key: str | None
    visit_id: int | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    events: list[EventView]
    actions: list[AuditView]


@dataclass(frozen=True)
class ChannelStats:
    channel: str
    counts: dict[str, int]
    due: int
    oldest_pending_age: float | None  # seconds
    sent_in_window: int
    failed_in_window: int
    oldest_pending_at: datetime | None = None  # when the oldest pending one was created

    @property
    def success_rate(self) -> float | None:
        done = self.sent_in_window + self.failed_in_window
        return None if done == 0 else self.sent_in_window / done


@dataclass(frozen=True)
class VisitView:
    kodebooking: str
    source: str
    task_progress: dict[str, dict[str, Any]]
    created_at: datetime
    updated_at: datetime


Exported = Literal["messages", "visits", "runs"]  # the records an export can write out
