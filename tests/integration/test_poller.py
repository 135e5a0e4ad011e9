"""The poller role in this process, on a SQLite store, with a scripted source:
what a poll stores, and how failures (source down, slow, broken; store refusing)
are counted, retried and reported without ending the loop."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.bpjs.plan import Booking
from daemon.config.loader import parse_config
from daemon.domain.errors import StoreUnavailable
from daemon.roles.poller import FAILING_AFTER, Poller, SourceLoop
from daemon.runtime.frame import Children, Context
from daemon.runtime.metrics import Metrics
from daemon.sources.base import SourceError
from daemon.sources.khanza.settings import KhanzaSettings
from daemon.sources.khanza.source import KhanzaBpjsSource
from daemon.store.aio import open_async_store
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.models import MODELS, Message
from daemon.store.sync import Store
from tests.support.waiting import eventually
from tests.unit.test_bpjs_plan import ADD_FIELDS

pytestmark = pytest.mark.timeout(60)

ZONE = ZoneInfo("Asia/Jakarta")
DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 12:00 in Jakarta

CONFIG = """
database: sqlite:///{path}
timezone: Asia/Jakarta
channels:
  bpjs: {{kind: bpjs_antrean, base_url: "http://127.0.0.1:9/", cons_id: "1", secret: s,
          user_key: k}}
  hook: {{kind: http, url: "http://127.0.0.1:9/"}}
sources:
  rs:
    kind: khanza
    dsn: mysql://u:p@127.0.0.1:9/sik
    channel: bpjs
    interval: {interval}
    jitter: 0
    max_backoff: {max_backoff}
    timeout: {timeout}
"""


def local(clock: str) -> datetime:
    hour, minute = map(int, clock.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=ZONE)


def visit(kb: str, **times: str) -> Booking:
    return Booking(kb, DAY, False, ADD_FIELDS, {int(k[1:]): local(v) for k, v in times.items()})


class ScriptedSource:
    """A source whose answer the test sets: bookings, an error, or a delay."""

    def __init__(self) -> None:
        self.bookings: list[Booking] = []
        self.error: Exception | None = None
        self.delay = 0.0
        self.calls: list[tuple[date, date, dict[str, Collection[str]]]] = []
        self.release = threading.Event()
        self.stops: list[threading.Event | None] = []

    def read(
        self,
        first: date,
        last: date,
        settled: Mapping[str, Collection[str]] | None = None,
        stop: threading.Event | None = None,
    ) -> list[Booking]:
        self.calls.append((first, last, dict(settled or {})))
        self.stops.append(stop)
        if self.delay:
            self.release.wait(self.delay)
        if self.error is not None:
            raise self.error
        return list(self.bookings)


def context(tmp_path: Path, **values: Any) -> Context:
    defaults = {"interval": "50ms", "max_backoff": "100ms", "timeout": "5s"}
    text = CONFIG.format(path=tmp_path / "o.db", **{**defaults, **values})
    settings = parse_config(text)
    migrate(open_database(settings.database))
    store = open_async_store(settings.database, in_process=False)
    return Context("poller", 0, "test:poller.0", settings, store, Metrics())


class Harness:
    """The poller role with its children, as the frame runs them, without the
    process around it (signals, health server); ``store`` reads what it wrote."""

    def __init__(self, ctx: Context, source: ScriptedSource) -> None:
        self.ctx = ctx
        self.source = source
        self.role = Poller(
            ctx, lambda name, settings, zone: KhanzaBpjsSource(settings, zone, source)
        )
        self.children = Children(self.role, "poller")
        self.store: Store = ctx.store._store  # this process's view of the database
        self.store.db.bind(MODELS)  # the model declarations, for the test's own queries

    @property
    def loop(self) -> SourceLoop:
        loop = self.children.get("source rs")
        assert isinstance(loop, SourceLoop)
        return loop

    def start(self) -> None:
        self.children.start(self.ctx.settings)

    def problems(self) -> list[str]:
        return self.children.problems()


@pytest.fixture
async def make_poller(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., tuple[Harness, ScriptedSource]]]:
    made: list[Harness] = []

    def make(**values: Any) -> tuple[Harness, ScriptedSource]:
        source = ScriptedSource()
        harness = Harness(context(tmp_path, **values), source)
        made.append(harness)
        return harness, source

    yield make
    for harness in made:
        harness.source.release.set()
        await harness.children.drain(5)
        await harness.ctx.store.aclose()


def sample(poller: Harness, name: str, **labels: str) -> float:
    value = poller.ctx.metrics.registry.get_sample_value(name, {"source": "rs", **labels})
    return value or 0.0


def loop_of(poller: Harness) -> SourceLoop:
    """The source's loop, built but not started: only poll_once is driven here."""
    [spec] = poller.role.children(poller.ctx.settings)
    loop = spec.build()
    assert isinstance(loop, SourceLoop)
    return loop


def progress(poller: Harness, kb: str) -> dict[str, Any]:
    [visit] = poller.store.find_visits(kb, "rs")
    return visit.task_progress


# --- a poll ----------------------------------------------------------------------------


async def test_a_poll_stores_messages_progress_and_cursor_once(make_poller):
    poller, source = make_poller()
    loop = loop_of(poller)
    source.bookings = [visit("KB-1", t3="08:00", t4="08:10"), visit("KB-2", t3="09:00")]
    assert await loop.poll_once(NOW) == "ok"
    store = poller.store
    keys = sorted(m.key for m in Message.select(Message.key))
    assert keys == ["KB-1:add", "KB-1:task:3", "KB-1:task:4", "KB-2:add", "KB-2:task:3"]
    assert progress(poller, "KB-1")["4"]["status"] == "queued"
    assert json.loads(store.get_cursor("rs"))["date"] == "2026-11-23"
    assert source.calls[0][:2] == (DAY, DAY)
    # the same answer again: nothing new; the steps already queued are passed as settled
    assert await loop.poll_once(NOW) == "ok"
    assert Message.select().count() == 5
    assert source.calls[1][2]["KB-1"] == frozenset({"add", "3", "4"})
    assert sample(poller, "outboxd_poll_runs_total", result="ok") == 2
    assert sample(poller, "outboxd_poll_messages_total") == 5
    # a new time later in the day goes after what was queued
    source.bookings = [visit("KB-1", t3="08:00", t4="08:10", t5="08:40")]
    assert await loop.poll_once(NOW) == "ok"
    row = Message.get(Message.key == "KB-1:task:5")
    assert row.after_id == Message.get(Message.key == "KB-1:task:4").id


async def test_held_steps_are_counted_and_visible(make_poller):
    poller, source = make_poller()
    loop = loop_of(poller)
    source.bookings = [visit("KB-1", t3="08:00", t4="07:50")]
    assert await loop.poll_once(NOW) == "ok"
    entry = progress(poller, "KB-1")["4"]
    assert entry == {"status": "held", "reason": "task 4 at 07:50 is earlier than task 3 at 08:00"}
    assert sample(poller, "outboxd_poll_held_steps") == 1


# --- failures ------------------------------------------------------------------------------


async def test_a_source_that_is_down_is_counted_retried_and_reported(make_poller):
    poller, source = make_poller()
    source.error = SourceError("cannot connect to u@127.0.0.1:9/sik: OperationalError 2003")
    source.bookings = [visit("KB-1", t3="08:00")]
    poller.start()
    loop = poller.loop
    await eventually(lambda: loop.failures >= FAILING_AFTER + 1)
    assert loop.task is not None and not loop.task.done()
    [problem] = poller.problems()
    assert problem.startswith(f"source rs: {loop.failures} polls in a row failed")
    assert "OperationalError 2003" in problem
    assert sample(poller, "outboxd_source_errors_total") >= FAILING_AFTER + 1
    assert sample(poller, "outboxd_poll_runs_total", result="source_error") >= FAILING_AFTER
    assert poller.store.get_cursor("rs") is None  # nothing moved
    assert Message.select().count() == 0
    # back up: stored on the next poll, the problem gone
    source.error = None
    await eventually(lambda: loop.failures == 0)
    assert poller.problems() == []
    assert Message.select().count() == 2
    assert poller.store.get_cursor("rs") is not None


async def test_a_slow_source_times_out_and_is_not_read_twice_at_once(make_poller):
    poller, source = make_poller(timeout="200ms")
    loop = loop_of(poller)
    source.delay = 3600.0  # only the timeout can end the poll within the test's timeout
    assert await loop.poll_once(NOW) == "timeout"
    assert loop.last_error == "reading the source took longer than 0.2s"
    assert source.stops[0] is not None and source.stops[0].is_set()  # told to give up
    # the first read still runs on its thread: a second one is not started beside it
    assert await loop.poll_once(NOW) == "source_error"
    assert "previous read has not finished" in loop.last_error
    assert len(source.calls) == 1
    assert sample(poller, "outboxd_source_errors_total") == 2
    source.delay = 0.0
    source.release.set()
    await eventually(lambda: loop._reading.done())
    assert await loop.poll_once(NOW) == "ok"


async def test_a_bug_in_a_poll_does_not_end_the_loop(make_poller):
    poller, source = make_poller()
    source.error = RuntimeError("unexpected")
    poller.start()
    loop = poller.loop
    await eventually(lambda: loop.failures >= 2)
    assert loop.task is not None and not loop.task.done()
    assert loop.last_error == "RuntimeError: unexpected"
    assert sample(poller, "outboxd_poll_runs_total", result="error") >= 2


async def test_a_store_that_refuses_moves_nothing(make_poller, monkeypatch):
    poller, source = make_poller()
    loop = loop_of(poller)
    source.bookings = [visit("KB-1", t3="08:00")]

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(loop.store, "sync_visits", refuse)
    assert await loop.poll_once(NOW) == "store_error"
    assert loop.last_error == "store: database is locked"
    assert sample(poller, "outboxd_source_errors_total") == 0
    monkeypatch.undo()
    assert poller.store.get_cursor("rs") is None
    assert await loop.poll_once(NOW) == "ok"
    assert Message.select().count() == 2


async def test_one_visit_refused_does_not_stop_the_others(make_poller):
    poller, source = make_poller()
    loop = loop_of(poller)
    # KB-BAD's progress says its add is queued, but the message is gone (purged):
    # task 3 names it as prerequisite and the store refuses that visit
    poller.store.sync_visits("rs", {"KB-BAD": {"add": {"status": "queued"}}}, [])
    source.bookings = [visit("KB-BAD", t3="08:00"), visit("KB-OK", t3="08:00")]
    assert await loop.poll_once(NOW) == "ok"
    keys = sorted(m.key for m in Message.select(Message.key))
    assert keys == ["KB-OK:add", "KB-OK:task:3"]
    assert poller.store.get_cursor("rs") is not None
    entry = progress(poller, "KB-BAD")["3"]
    assert entry["status"] == "held" and entry["reason"].startswith("not stored: prerequisite")


# --- drain and reload ---------------------------------------------------------------------


async def test_drain_does_not_wait_for_a_slow_read(make_poller):
    # the read, its timeout and the drain's deadline are an hour each: a drain that
    # waited for any of them would run into the test's timeout
    poller, source = make_poller(timeout="1h")
    source.delay = 3600.0
    poller.start()
    loop = poller.loop
    await eventually(lambda: len(source.calls) == 1)
    await poller.children.drain(3600)
    assert loop.task is not None and loop.task.cancelled()  # the read was given up on
    assert source.stops[0] is not None and source.stops[0].is_set()
    source.release.set()


async def test_reload_rebuilds_a_changed_source_only_and_says_what_changed(
    make_poller, tmp_path, caplog
):
    poller, _ = make_poller()
    poller.start()
    first = poller.loop
    same = context(tmp_path).settings
    await poller.children.reload(same)
    assert poller.loop is first  # nothing changed
    changed = same.model_copy(
        update={
            "sources": {
                "rs": KhanzaSettings.model_validate(
                    {**same.sources["rs"].model_dump(), "interval": 0.2, "timezone": "UTC"}
                )
            }
        }
    )
    with caplog.at_level("INFO", logger="outboxd.frame"):
        await poller.children.reload(changed)
    assert first.task is not None and first.task.done()
    assert poller.loop is not first and not poller.loop.task.done()
    assert "source rs changed: interval 50ms → 200ms, timezone Asia/Jakarta → UTC" in caplog.text
    removed = same.model_copy(update={"sources": {}})
    with caplog.at_level("INFO", logger="outboxd.frame"):
        await poller.children.reload(removed)
    assert poller.children.get("source rs") is None
    assert "source rs removed" in caplog.text
