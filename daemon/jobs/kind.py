"""What a job kind declares, and what a run of it is handed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from daemon.fields import Model

if TYPE_CHECKING:
    from daemon.settings import Settings
    from daemon.store.aio import AsyncStore


class JobOptions(Model):
    """The options of a job kind (``options:`` of a schedule)."""


class JobFailed(Exception):
    """The job could not do its work; the text says why in one line. The run is
    ``failed`` and retried as its schedule's ``retry`` says."""


class Notify(Protocol):
    async def __call__(self, targets: list[str], subject: str, text: str) -> list[str]:
        """Send to the named notify targets; answers one line per target."""
        ...


@dataclass
class JobContext:
    schedule: str
    run_id: int
    fire: datetime  # the instant the run is for (aware UTC)
    attempt: int
    zone: ZoneInfo  # the schedule's
    settings: Settings
    store: AsyncStore
    notify: Notify
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("outboxd.jobs"))


Opts = TypeVar("Opts", bound=JobOptions)
# cross-references of a schedule's options with the whole (interpolated) document:
# (a path under the schedule's "options", the problem)
Check = Callable[[Mapping[str, Any], Mapping[str, Any]], list[tuple[str, str]]]


def no_checks(_options: Mapping[str, Any], _document: Mapping[str, Any]) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class JobKind(Generic[Opts]):
    name: str
    options: type[Opts]
    run: Callable[[JobContext, Opts], Awaitable[dict[str, Any]]]  # the output, a small JSON
    describe: Callable[[Opts], str]
    check: Check = no_checks
