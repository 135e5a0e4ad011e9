"""A message as it goes into the store, as a dispatcher claims it, and what became
of an attempt to deliver it. No peewee objects leave the store."""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from daemon.domain.errors import Refused

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

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls


# How a payload's reference to its prerequisite's answer begins (``{{after.id}}``,
# ``daemon.channels.references``): a claim hands that answer only to such payloads.
PREREQUISITE_MARK = b"{{after"


class InvalidMessage(Refused):
    """A message that cannot be stored as given; the text says why, ``field``
    which of ``NewMessage``'s it is (``key``, ``after_key``), ``index`` which
    message of a batch."""

    def __init__(self, text: str, field: str | None = None, index: int | None = None) -> None:
        super().__init__(text, "data", field)
        self.index = index


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
    # what it is found by: (name, value) of daemon.domain.search.SEARCH_FIELDS
    fields: tuple[tuple[str, str], ...] = ()


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
    # the prerequisite's stored response, filled by the claim when the payload names it
    after_response: str | None = None


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
