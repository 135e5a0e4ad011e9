"""Plain values that cross the store's boundary: what goes in, what comes out.
No peewee objects leave the store."""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

C = TypeVar("C")


def positional_pickle(cls: type[C]) -> type[C]:
    """Pickle instances of a slotted dataclass as one call of the class with its
    fields in order: a third of the cost of setting slot by slot, for the values
    that cross to and from the store's worker process by the thousand."""
    found = fields(cls)  # type: ignore[arg-type]
    if any(not f.init or f.kw_only for f in found):
        raise TypeError(f"{cls.__name__}: every field must be a positional __init__ argument")
    names = [f.name for f in found]
    get = operator.attrgetter(*names)
    values: Callable[[Any], tuple[Any, ...]] = get if len(names) > 1 else lambda o: (get(o),)

    def __reduce__(self: Any) -> tuple[type[C], tuple[Any, ...]]:
        if type(self) is not cls:  # a subclass may have more fields: the usual way
            return object.__reduce_ex__(self, pickle.HIGHEST_PROTOCOL)  # type: ignore[return-value]
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign,assignment]
    return cls


class InvalidMessage(ValueError):
    """A message that cannot be stored as given; the text says why."""


class UnknownPrerequisite(InvalidMessage):
    """``after`` names a message that does not exist."""


@dataclass(frozen=True)
class NewMessage:
    channel: str
    key: str
    payload: bytes
    kind: str = "raw"
    after_key: str | None = None  # prerequisite in the same channel, by key
    after_id: int | None = None  # prerequisite in any channel, by id
    not_before: datetime | None = None
    group_key: str | None = None  # ordered channels deliver one message per group at a time
    visit: str | None = None  # the tracked item (a source's visit) this message reports on
    step: str | None = None  # which step of it (the store keeps only the visit link)


@dataclass(frozen=True)
class EnqueueResult:
    id: int
    created: bool
    status: str


@positional_pickle
@dataclass(slots=True)  # read-only by convention: frozen costs per message
class ClaimedMessage:
    id: int
    channel: str
    kind: str
    key: str
    payload: bytes
    attempts: int  # attempts made before this one
    created_at: datetime
    lease_expires_at: datetime
    after_id: int | None = None
    group_key: str | None = None


# --- what became of a delivery attempt, as recorded by ``Store.record`` ------------
# The dispatcher decides (it holds the claimed message and the channel's policy);
# the store writes what it is told, for messages the owner still holds.

Progress = tuple[str, dict[str, Any]]  # (step, entry) for the message's tracked item


@positional_pickle
@dataclass(slots=True)  # read-only by convention: frozen costs per message
class Delivered:
    id: int
    response: str | None = None
    progress: Progress | None = None


@positional_pickle
@dataclass(slots=True)  # read-only by convention: frozen costs per message
class RetryAt:
    """Pending again, due at ``at``; ``counted``: the attempt counts towards
    ``max_attempts`` (a wait for a predecessor does not)."""

    id: int
    at: datetime
    error: str
    response: str | None = None
    counted: bool = True
    details: dict[str, Any] | None = None  # for the status event
    progress: Progress | None = None


@positional_pickle
@dataclass(slots=True)  # read-only by convention: frozen costs per message
class Failed:
    """Failed for good: refused by the peer, or ``gave_up`` when retries ran out."""

    id: int
    error: str
    response: str | None = None
    gave_up: bool = False
    details: dict[str, Any] | None = None  # for the status event
    progress: Progress | None = None


@positional_pickle
@dataclass(slots=True)  # read-only by convention: frozen costs per message
class Released:
    """Back to pending, no attempt counted (not sent, or cut off by a drain)."""

    id: int


AttemptResult = Delivered | RetryAt | Failed | Released


@dataclass(frozen=True)
class RecordResult:
    """``recorded`` maps id → the status written; ``lost`` lists ids whose lease
    this owner no longer held (expired and maybe claimed again), left untouched."""

    recorded: dict[int, str] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)


class OperatorRefused(ValueError):
    """An operator action or a listing the rules refuse as asked (no selector, ids
    with a filter, a status the action cannot take, an unknown channel); the text
    says why and what to do instead. Nothing was changed."""


class InvalidCursor(ValueError):
    """A listing cursor that is not one this store handed out."""


@dataclass(frozen=True)
class MessageFilter:
    """Which messages: by ``ids``, or by a filter (the rest). ``since``/``until``
    bound the creation time; ``key_prefix`` needs ``channel`` (keys are per channel)."""

    ids: tuple[int, ...] = ()
    channel: str | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    key_prefix: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.ids or self.by_filter)

    @property
    def by_filter(self) -> bool:
        return bool(
            self.channel
            or self.statuses
            or self.since
            or self.until
            or self.kind
            or self.key_prefix
        )


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
    starts at (the default window when none was asked for)."""

    items: list[MessageSummary]
    next: str | None
    since: datetime


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


# --- partners' status callbacks (``Store.receive_webhook``) ---------------------------


@dataclass(frozen=True)
class WebhookCall:
    """A partner's callback whose signature holds, read: which message it is
    about (``message_key`` on ``channel``, or the partner's id ``message_ref``
    found at ``ref_pointer`` in the answer kept when a message was sent), the
    partner's status and what it means (``outcome``: confirmed, rejected, or
    None for a status the webhook does not map). ``problem``: why the body could
    not be read, when it could not."""

    webhook: str
    webhook_id: str
    channel: str
    body: bytes
    partner_status: str | None = None
    outcome: str | None = None
    message_key: str | None = None
    message_ref: str | None = None
    ref_pointer: str = "/id"
    problem: str | None = None


@dataclass(frozen=True)
class WebhookOutcome:
    """What a callback did and the answer to give (the first one's, for a repeat:
    ``replay``)."""

    receipt_id: int
    result: str  # applied | unchanged | unmapped_status | unknown_message | unreadable
    http_status: int
    answer: dict[str, Any]
    message_id: int | None
    replay: bool


@dataclass(frozen=True)
class WebhookReceiptRow:
    id: int
    webhook: str
    webhook_id: str
    received_at: datetime
    partner_status: str | None
    result: str
    message_id: int | None
    answer_status: int
    answer: dict[str, Any]
    body: str
    body_size: int
