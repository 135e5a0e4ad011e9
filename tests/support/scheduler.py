"""The scheduler role in this process, built as ``outboxd run scheduler`` builds
it (its ``Context``, its children from ``Scheduler.children``), on a clock the
test moves: its schedules written and read, its fires and runs driven by the
test (``ScheduleBook.sync``, ``ScheduleBook.fire``, ``RunKeeper.start``), the
APScheduler timer never started."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import yaml

from daemon.config.loader import parse_config
from daemon.config.settings import Settings
from daemon.domain.schedules import RunRow
from daemon.roles.scheduler import Known, RunKeeper, ScheduleBook, Scheduler
from daemon.runtime.frame import Context, owner_id
from daemon.runtime.metrics import Metrics
from daemon.scheduling.fires import Fire, next_fires
from daemon.store.aio import AsyncStore, open_async_store
from tests.support.clock import FakeClock

PY = sys.executable


def command(code: str, *args: str, **schedule: Any) -> dict[str, Any]:
    """A schedule whose job runs ``python -c CODE ARGS``."""
    return {**schedule, "job": "command", "options": {"command": [PY, "-c", code, *args]}}


def settings_for(db_url: str, schedules: dict[str, Any], **more: Any) -> Settings:
    """The settings of a YAML file naming ``db_url`` and these schedules."""
    return parse_config(yaml.safe_dump({"database": db_url, "schedules": schedules, **more}))


@dataclass
class Harness:
    role: Scheduler
    book: ScheduleBook
    keeper: RunKeeper
    clock: FakeClock

    @property
    def store(self) -> AsyncStore:
        return self.role.ctx.store

    def known(self, name: str) -> Known:
        return self.role.known[name]

    async def fire_next(self, name: str) -> RunRow | None:
        """The clock moved on to the schedule's next fire, and that fire claimed as
        the timer claims it (on time)."""
        fire = self.next_fire(name)
        self.clock.advance((fire.at - self.clock.now()).total_seconds())
        return await self.book.fire(self.known(name), fire, "cron", on_time=True)

    def next_fire(self, name: str) -> Fire:
        return next_fires(self.known(name).timing, self.clock.now())[0]

    async def ledger(self, name: str) -> list[RunRow]:
        """The schedule's runs in the store, by fire time and attempt."""
        rows = await self.store.runs(name, limit=1000)
        return sorted(rows, key=lambda r: (r.fire_time, r.attempt))

    def sample(self, metric: str, **labels: str) -> float | None:
        return self.role.ctx.metrics.registry.get_sample_value(metric, labels)


@contextlib.asynccontextmanager
async def scheduler(settings: Settings, clock: FakeClock, num: int = 0) -> AsyncIterator[Harness]:
    """A scheduler role (process number ``num``) on ``clock``, its file's schedules
    written as at its start; drained and its store closed at the end."""
    store = open_async_store(settings.database, in_process=False)
    owner = owner_id(settings.node, "scheduler", num)
    context = Context("scheduler", num, owner, settings, store, Metrics())
    role = Scheduler(context, clock=clock)
    children = {spec.name: spec.build() for spec in role.children(settings)}
    book, keeper = children["schedules"], children["runs"]
    assert isinstance(book, ScheduleBook) and isinstance(keeper, RunKeeper)
    try:
        await book._write_file_schedules()
        yield Harness(role, book, keeper, clock)
    finally:
        await keeper.drain(5.0)
        await book.drain(5.0)
        await store.aclose()
