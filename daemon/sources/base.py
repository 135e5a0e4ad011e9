"""What a source kind declares, and the contract the poller drives.

A source reads another system (a hospital's SIMRS) and answers what to store:
messages, the progress of the items they report on (visits), and the cursor
the next poll starts from. ``read`` runs on a thread of the source's own
(blocking drivers, bounded by the source's ``timeout``); ``plan`` is pure and
runs on the poller's loop once the progress of the items read is known. A
source never loops and never writes to the store: the poller does both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic import Field

from daemon.domain.fields import Model, Number, PositiveDuration, TimeZoneName
from daemon.domain.messages import NewMessage


class SourceError(Exception):
    """The source could not be read (down, refused, too slow, a bad query); the
    text says why in one line, never with a password."""


class SourceSettings(Model):
    """The keys every source takes; a kind's model adds its own and ``kind``."""

    kind: str
    channel: str  # where the source's messages go (cross-checked against the kind)
    interval: PositiveDuration = 30.0  # between the end of one poll and the next
    # The source's IANA zone, when its times carry none (default: the top-level
    # ``timezone``). It also decides which date "today" is.
    timezone: TimeZoneName | None = None
    # Each wait is the interval ± this fraction, so pollers do not hit a database in step.
    jitter: Annotated[Number, Field(ge=0, le=0.5)] = 0.1
    # After a failed poll the wait doubles from ``interval`` up to this.
    max_backoff: PositiveDuration = 300.0
    timeout: PositiveDuration = 120.0  # for a whole poll's reading; then it counts as failed


@dataclass
class Reading:
    """What one read found: the source's own records, the tracked items they cover
    (their progress is looked up before planning) and where the next poll starts."""

    records: Any
    items: list[str]
    cursor: str
    count: int = 0  # records read, for the log


@dataclass
class Batch:
    """What a poll stores, in one transaction."""

    messages: list[NewMessage] = field(default_factory=list)
    progress: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    cursor: str | None = None
    held: int = 0  # steps held back (for the metric)


class Source(Protocol):
    def read(self, cursor: str | None, now: datetime, stop: threading.Event) -> Reading:
        """Read the window the cursor and ``now`` give (blocking; stop starting
        queries once ``stop`` is set); ``SourceError`` when it cannot."""
        ...

    def plan(
        self, reading: Reading, progress: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> Batch:
        """What to store for a reading, given the current progress of its items."""
        ...


S = TypeVar("S", bound=SourceSettings)
# an operator's own read-only query (an export): (name, settings, zone, sql, params) →
# (columns, rows); blocking, raises SourceError
Query = Callable[
    [str, Any, ZoneInfo, str, Mapping[str, Any]], tuple[list[str], list[tuple[Any, ...]]]
]


@dataclass(frozen=True)
class SourceKind(Generic[S]):
    name: str
    settings: type[S]
    build: Callable[[str, S, ZoneInfo], Source]  # (source name, settings, its zone)
    channel_kinds: tuple[str, ...]  # the channel kinds its messages can go to
    describe: Callable[[S], str]  # where it reads, for summaries (no secret)
    query: Query | None = None  # the kind can answer a query of the operator's own
