"""The poller role in this process, on a SQLite store, with a scripted source:
what a poll stores, and how failures (source down, slow, broken; store refusing)
are counted, retried and reported without ending the loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.config import parse_config
from daemon.metrics import Metrics
from daemon.roles.poller import FAILING_AFTER, Poller
from daemon.runtime import Context
from daemon.settings import KhanzaSource as KhanzaSettings
from daemon.sources import SourceError
from daemon.sources.bpjs_plan import Booking
from daemon.store import Store, StoreUnavailable, migrate, open_database
from daemon.store.models import Message
from daemon.store.thread import StoreThread
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
    db = open_database(settings.database)
    migrate(db)
    store = Store(db)
    return Context("poller", 0, "test:poller.0", settings, store, StoreThread(store), Metrics())


@pytest.fixture
async def make_poller(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., tuple[Poller, ScriptedSource]]]:
    made: list[tuple[Poller, Context]] = []

    def make(**values: Any) -> tuple[Poller, ScriptedSource]:
        ctx = context(tmp_path, **values)
        source = ScriptedSource()
        poller = Poller(ctx, lambda name, settings, zone: source)
        made.append((poller, ctx))
        return poller, source

    yield make
    for poller, ctx in made:
        for loop in poller.loops.values():
            loop.stopping.set()
        await poller.drain(5)
        await ctx.thread.aclose()


def sample(poller: Poller, name: str, **labels: str) -> float:
    value = poller.ctx.metrics.registry.get_sample_value(name, {"source": "rs", **labels})
    return value or 0.0


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def loop_of(poller: Poller):
    poller._start_loop("rs")
    loop = poller.loops["rs"]
    loop.stopping.set()  # only poll_once is driven here
    return loop


# --- a poll ----------------------------------------------------------------------------


async def test_a_poll_stores_messages_progress_and_cursor_once(make_poller):
    poller, source = make_poller()
    loop = loop_of(poller)
    source.bookings = [visit("KB-1", t3="08:00", t4="08:10"), visit("KB-2", t3="09:00")]
    assert await loop.poll_once(NOW) == "ok"
    store = poller.ctx.store
    keys = sorted(m.key for m in Message.select(Message.key))
    assert keys == ["KB-1:add", "KB-1:task:3", "KB-1:task:4", "KB-2:add", "KB-2:task:3"]
    assert store.get_visit("KB-1").task_progress["4"]["status"] == "queued"
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
    entry = poller.ctx.store.get_visit("KB-1").task_progress["4"]
    assert entry == {"status": "held", "reason": "task 4 at 07:50 is earlier than task 3 at 08:00"}
    assert sample(poller, "outboxd_poll_held_steps") == 1


# --- failures ------------------------------------------------------------------------------


async def test_a_source_that_is_down_is_counted_retried_and_reported(make_poller):
    poller, source = make_poller()
    source.error = SourceError("cannot connect to u@127.0.0.1:9/sik: OperationalError 2003")
    source.bookings = [visit("KB-1", t3="08:00")]
    [supervisor] = await poller.start()
    loop = poller.loops["rs"]
    await eventually(lambda: loop.failures >= FAILING_AFTER + 1)
    assert not loop.task.done() and not supervisor.done()
    [problem] = poller.problems()
    assert problem.startswith(f"source rs: {loop.failures} polls in a row failed")
    assert "OperationalError 2003" in problem
    assert sample(poller, "outboxd_source_errors_total") >= FAILING_AFTER + 1
    assert sample(poller, "outboxd_poll_runs_total", result="source_error") >= FAILING_AFTER
    assert poller.ctx.store.get_cursor("rs") is None  # nothing moved
    assert Message.select().count() == 0
    # back up: stored on the next poll, the problem gone
    source.error = None
    await eventually(lambda: loop.failures == 0)
    assert poller.problems() == []
    assert Message.select().count() == 2
    assert poller.ctx.store.get_cursor("rs") is not None


async def test_a_slow_source_times_out_and_is_not_read_twice_at_once(make_poller):
    poller, source = make_poller(timeout="200ms")
    loop = loop_of(poller)
    source.delay = 10.0
    started = time.monotonic()
    assert await loop.poll_once(NOW) == "timeout"
    assert time.monotonic() - started < 2
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
    await poller.start()
    loop = poller.loops["rs"]
    await eventually(lambda: loop.failures >= 2)
    assert not loop.task.done()
    assert loop.last_error == "RuntimeError: unexpected"
    assert sample(poller, "outboxd_poll_runs_total", result="error") >= 2


async def test_a_store_that_refuses_moves_nothing(make_poller, monkeypatch):
    poller, source = make_poller()
    loop = loop_of(poller)
    source.bookings = [visit("KB-1", t3="08:00")]

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(poller.ctx.store, "sync_visits", refuse)
    assert await loop.poll_once(NOW) == "store_error"
    assert loop.last_error == "store: database is locked"
    assert sample(poller, "outboxd_source_errors_total") == 0
    monkeypatch.undo()
    assert poller.ctx.store.get_cursor("rs") is None
    assert await loop.poll_once(NOW) == "ok"
    assert Message.select().count() == 2


async def test_one_visit_refused_does_not_stop_the_others(make_poller):
    poller, source = make_poller()
    loop = loop_of(poller)
    # KB-BAD's progress says its add is queued, but the message is gone (purged):
    # task 3 names it as prerequisite and the store refuses that visit
    poller.ctx.store.sync_visits("rs", {"KB-BAD": {"add": {"status": "queued"}}}, [])
    source.bookings = [visit("KB-BAD", t3="08:00"), visit("KB-OK", t3="08:00")]
    assert await loop.poll_once(NOW) == "ok"
    keys = sorted(m.key for m in Message.select(Message.key))
    assert keys == ["KB-OK:add", "KB-OK:task:3"]
    assert poller.ctx.store.get_cursor("rs") is not None
    entry = poller.ctx.store.get_visit("KB-BAD").task_progress["3"]
    assert entry["status"] == "held" and entry["reason"].startswith("not stored: prerequisite")


# --- drain and reload ---------------------------------------------------------------------


async def test_drain_does_not_wait_for_a_slow_read(make_poller):
    poller, source = make_poller(timeout="30s")
    source.delay = 30.0
    await poller.start()
    await eventually(lambda: len(source.calls) == 1)
    started = time.monotonic()
    await poller.drain(10)
    assert time.monotonic() - started < 2
    assert poller.loops["rs"].task.done()
    assert source.stops[0] is not None and source.stops[0].is_set()
    source.release.set()


async def test_reload_restarts_a_changed_source_and_refuses_a_wrong_channel(make_poller, tmp_path):
    poller, _ = make_poller()
    await poller.start()
    first = poller.loops["rs"]
    same = context(tmp_path).settings
    await poller.reload(same)
    assert poller.loops["rs"] is first  # nothing changed
    changed = same.model_copy(
        update={
            "sources": {
                "rs": KhanzaSettings.model_validate(
                    {**same.sources["rs"].model_dump(), "channel": "hook"}
                )
            }
        }
    )
    await poller.reload(changed)
    assert first.task.done()
    assert "rs" not in poller.loops
    assert poller.problems() == ["source rs: channel 'hook' is http, not bpjs_antrean: not polled"]
    await poller.reload(same)
    assert poller.problems() == [] and not poller.loops["rs"].task.done()
