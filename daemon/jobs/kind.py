"""What a job kind declares, and what a run of it is handed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from daemon.domain.fields import Model
from daemon.jobs.template import RunFacts, render
from daemon.sources.base import SourceSettings

if TYPE_CHECKING:  # what the store's answers look like: annotations alone
    from daemon.domain.tracking import CheckResult, DueCheck
    from daemon.domain.views import ChannelStats, Exported


class JobOptions(Model):
    """The options of a job kind (``options:`` of a schedule)."""


class JobFailed(Exception):
    """The job could not do its work; the text says why in one line. The run is
    ``failed`` and retried as its schedule's ``retry`` says; ``output``, what the
    job has to show for it (a program's last lines), is kept in the run's record."""

    def __init__(self, text: str, output: dict[str, Any] | None = None) -> None:
        super().__init__(text)
        self.output = output


class Notify(Protocol):
    async def __call__(self, targets: list[str], subject: str, text: str) -> list[str]:
        """Send to the named notify targets; answers one line per target."""
        ...


class JobStore(Protocol):
    """The store's operations a job may call (``daemon.store.aio.AsyncStore`` has them)."""

    def stats(
        self, now: datetime | None = None, window: float = 3600.0
    ) -> Awaitable[list[ChannelStats]]: ...

    def purge_messages(self, before: datetime, limit: int = 1000) -> Awaitable[int]: ...

    def purge_runs(self, before: datetime, limit: int = 1000) -> Awaitable[int]: ...

    def purge_notifications(self, before: datetime, limit: int = 1000) -> Awaitable[int]: ...

    def compact_text_index(self, pages: int = 500) -> Awaitable[int]: ...

    def text_index_rows(self) -> Awaitable[int]: ...

    def purge_receipts(self, before: datetime, limit: int = 1000) -> Awaitable[int]: ...

    def export_page(
        self,
        what: Exported,
        start: datetime,
        end: datetime,
        after_id: int = 0,
        limit: int = 1000,
        channel: str | None = None,
    ) -> Awaitable[list[dict[str, Any]]]: ...

    def due_status_checks(
        self,
        channel: str,
        every: float,
        max_checks: int,
        limit: int = 100,
        now: datetime | None = None,
    ) -> Awaitable[list[DueCheck]]: ...

    def record_status_checks(
        self,
        results: Sequence[CheckResult],
        max_checks: int,
        actor: str,
        now: datetime | None = None,
    ) -> Awaitable[dict[str, int]]: ...


@dataclass
class JobContext:
    """What a run of a job is handed: what the run is for (its schedule, fire time,
    attempt), the schedule's zone, the file's sources, the store's job operations
    and the notify targets. ``render`` fills a text's placeholders
    (``daemon.jobs.template``: ``{{fire:%Y-%m-%d}}``, ``{{schedule}}`` …)."""

    schedule: str
    run_id: int
    fire: datetime  # the instant the run is for (aware UTC)
    attempt: int
    zone: ZoneInfo  # the schedule's
    timezone: str  # the file's (``timezone:``), for what has no zone of its own
    sources: Mapping[str, SourceSettings]  # the file's sources, by name
    store: JobStore
    notify: Notify
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("outboxd.jobs"))
    # (channel, result) of each OAuth2 token fetch a job makes, for the metrics
    count_token: Callable[[str, str], None] = field(default=lambda _channel, _result: None)
    # what the job has to show so far: kept as the run's output when it ends
    # without one of its own (failed, timed out, cancelled, stopped)
    progress: dict[str, Any] = field(default_factory=dict)

    @property
    def fire_local(self) -> datetime:
        """The fire time on the schedule's wall clock."""
        return self.fire.astimezone(self.zone)

    @property
    def facts(self) -> RunFacts:
        return RunFacts(self.schedule, self.fire, self.zone, self.attempt, self.run_id)

    def render(self, text: str, url: bool = False) -> str:
        """The text with the run's placeholders filled (``url``: percent-encoded)."""
        return render(text, self.facts, url)


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
