"""What a channel kind declares, and the settings every channel takes.

A kind is one ``ChannelKind`` in a module of its own under ``kinds/``: its name,
its settings model, how to build the channel, how to check a payload at enqueue,
the message kind a payload gets when the caller names none, how it describes
itself in a summary, the fields its payloads are found by, whether its payloads
may refer to their prerequisite's answer, and, for a kind whose messages belong to a tracked item
(a BPJS visit), what an attempt's result means for that item. The registry
(``registry.py``) is a mapping of them; nothing else names a kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import Field, model_validator

from daemon.channels.base import Channel
from daemon.domain.fields import Flag, Integer, Model, PositiveDuration, RateValue
from daemon.domain.messages import AttemptResult, ClaimedMessage, Progress


class RetrySettings(Model):
    max_attempts: Annotated[Integer, Field(ge=1, le=100_000)] = 12
    backoff: PositiveDuration = 30.0
    max_backoff: PositiveDuration = 3600.0
    max_age: PositiveDuration = 86400.0

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> RetrySettings:
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must not be smaller than backoff")
        return self


class BreakerSettings(Model):
    # consecutive transport failures that open it
    failures: Annotated[Integer, Field(ge=1, le=100_000)] = 5
    cooldown: PositiveDuration = 30.0  # open this long, then one probe (half-open)


class ChannelSettings(Model):
    """The keys every channel takes; a kind's model adds its own and ``kind``."""

    kind: str
    rate: RateValue | None = None
    burst: Annotated[Integer, Field(ge=1, le=1_000_000)] | None = None
    concurrency: Annotated[Integer, Field(ge=1, le=1000)] = 4
    batch_size: Annotated[Integer, Field(ge=1, le=10000)] = 100
    lease: PositiveDuration = 60.0
    ordered: Flag = False  # one message in flight per ordering key, oldest first
    retry: RetrySettings = Field(default_factory=RetrySettings.model_construct)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings.model_construct)


class InvalidPayload(ValueError):
    """A payload the channel could never deliver; the text says why and where."""


S = TypeVar("S", bound=ChannelSettings)
# What a stored payload is found by: (name, value) pairs of
# ``daemon.domain.search.SEARCH_FIELDS`` (settings, the payload as stored).
Identifiers = Callable[[Any, bytes], list[tuple[str, str]]]
# What an attempt's result means for the tracked item its message belongs to:
# (message, result, now) → a progress entry, or None to leave the item as it is.
ProgressRule = Callable[[ClaimedMessage, AttemptResult, datetime], Progress | None]


@dataclass(frozen=True)
class ChannelKind(Generic[S]):
    name: str
    settings: type[S]
    build: Callable[[S], Channel]  # the protocol code, imported when built
    check_payload: Callable[[S, bytes, str], bytes]  # what to store, or InvalidPayload
    describe: Callable[[S], str]  # where it delivers, for summaries (no secret)
    default_message_kind: str | None  # None: the caller must name the kind
    message_kind_hint: str = ""  # what to say when a kind must be named and is not
    progress: ProgressRule | None = None
    # Its payloads may name what their prerequisite's peer answered ({{after.id}},
    # ``daemon.channels.references``), filled when sent; refused at enqueue without one.
    references: bool = False
    # The fields its payloads are found by (HL7: MSH-10, MSH-9, PID-3, PV1-19), kept
    # when a message is stored; None: found by their text only.
    identifiers: Identifiers | None = None
