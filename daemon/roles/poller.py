"""The poller role: one poll loop per source.

Every ``interval`` (± ``jitter``) a loop reads its source on a worker thread of its
own, under the source's ``timeout``; plans the visits' BPJS steps
(``daemon.sources.bpjs_plan``); and stores the batch with ``Store.sync_visits``,
which enqueues the messages, merges the visits' progress and moves the source's
cursor in one transaction. A poll that fails anywhere stores nothing and moves
nothing; the next poll reads again (keys make the repeat harmless).

The cursor is ``{"date": "YYYY-MM-DD", "polled_at": "…"}``: the last service date
fully polled. A poll covers today (in the source's zone) and ``lookback_days``
before it; when the cursor is older (the date changed since, or the poller was
down over midnight) the poll starts at the cursor's date, at most
``MAX_CATCHUP_DAYS`` back, so the end of a day is read once more.

Errors never end a loop: a source down, refusing, too slow or with a bad query,
and a store that does not answer, are logged, counted
(``outboxd_poll_runs_total{result}``, ``outboxd_source_errors_total``) and retried
after a wait that doubles from ``interval`` up to ``max_backoff``. A source failing
``FAILING_AFTER`` polls in a row is a problem on /healthz until it recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from daemon.metrics import PollerMetrics
from daemon.resilience.backoff import backoff_ceiling
from daemon.runtime import Context
from daemon.settings import KhanzaSource as KhanzaSettings
from daemon.settings import Settings
from daemon.sources import SourceError
from daemon.sources.bpjs_plan import Booking, Plan, plan_visits
from daemon.sources.khanza import KhanzaSource
from daemon.store import StoreError
from daemon.store.thread import StoreRunner
from daemon.store.types import InvalidMessage, NewMessage
from daemon.store.visits import step_of

log = logging.getLogger("outboxd.poller")

FAILING_AFTER = 3  # failed polls in a row that make the source a /healthz problem
MAX_CATCHUP_DAYS = 7  # how far back a stale cursor is followed
CHANNEL_KIND = "bpjs_antrean"


class SourceReader(Protocol):
    def read(
        self,
        first: date,
        last: date,
        settled: Mapping[str, Collection[str]] | None = None,
        stop: threading.Event | None = None,
    ) -> list[Booking]: ...


SourceFactory = Callable[[str, KhanzaSettings, ZoneInfo], SourceReader]


# --- pure helpers ---------------------------------------------------------------------


def poll_window(
    now: datetime, zone: ZoneInfo, lookback_days: int, cursor: str | None
) -> tuple[date, date]:
    """The service dates a poll at ``now`` covers: (first, last = today in ``zone``)."""
    today = now.astimezone(zone).date()
    first = today - timedelta(days=lookback_days)
    previous = cursor_date(cursor)
    if previous is not None and previous < first:
        first = max(previous, today - timedelta(days=MAX_CATCHUP_DAYS))
    return first, today


def cursor_date(cursor: str | None) -> date | None:
    """The date in a cursor value; None for none or one it cannot read."""
    if not cursor:
        return None
    try:
        return date.fromisoformat(json.loads(cursor)["date"])
    except (ValueError, TypeError, KeyError):
        return None


def cursor_value(last: date, now: datetime) -> str:
    return json.dumps({"date": last.isoformat(), "polled_at": now.astimezone(UTC).isoformat()})


def next_delay(
    interval: float,
    jitter: float,
    failures: int,
    max_backoff: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """The wait before the next poll: the interval, doubled per failure in a row up
    to ``max_backoff``, spread by ± ``jitter`` of itself."""
    base = interval
    if failures > 0:
        base = backoff_ceiling(failures, interval, max(max_backoff, interval))
    return base * (1.0 + jitter * (2.0 * rand() - 1.0))


def settled_steps(
    bookings: Sequence[Booking],
    progress: Mapping[str, Mapping[str, Mapping[str, Any]]],
    plan: Plan,
) -> dict[str, frozenset[str]]:
    """Per visit, the steps queued or further along once ``plan`` is stored."""
    out: dict[str, frozenset[str]] = {}
    for booking in bookings:
        kb = booking.kodebooking
        merged = {**progress.get(kb, {}), **plan.progress.get(kb, {})}
        out[kb] = frozenset(
            step
            for step, entry in merged.items()
            if entry.get("status") not in ("held", "failed", "cancelled", "rejected")
        )
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --- one source -----------------------------------------------------------------------


class SourceLoop:
    """Polls one source until drained."""

    def __init__(
        self,
        name: str,
        settings: KhanzaSettings,
        zone: ZoneInfo,
        source: SourceReader,
        thread: StoreRunner,
        metrics: PollerMetrics,
        owner: str,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.settings = settings
        self.zone = zone
        self.source = source
        self.thread = thread
        self.store = thread.store
        self.metrics = metrics
        self.owner = owner
        self.rand = rand
        self.failures = 0
        self.failing_since: datetime | None = None
        self.last_error: str | None = None
        self.polls = 0
        self.task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()
        self.writing = False  # storing a batch: let it finish when draining
        self.settled: dict[str, frozenset[str]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outboxd-{name}")
        self._reading: asyncio.Future[list[Booking]] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"poll:{self.name}")

    async def drain(self, timeout: float) -> None:
        """Stop polling; a batch being stored is let finish within ``timeout``."""
        self.stopping.set()
        task = self.task
        if task is not None and not task.done():
            if not self.writing:
                task.cancel()  # reading or waiting: nothing to lose
            _, pending = await asyncio.wait({task}, timeout=timeout)
            if pending:
                log.warning("drain deadline passed; poll abandoned", extra={"source": self.name})
                task.cancel()
                await asyncio.wait({task})
        self._executor.shutdown(wait=False, cancel_futures=True)

    def problems(self) -> list[str]:
        if self.failures < FAILING_AFTER:
            return []
        since = self.failing_since.isoformat(timespec="seconds") if self.failing_since else "?"
        return [
            f"source {self.name}: {self.failures} polls in a row failed (since {since}); "
            f"last: {self.last_error}"
        ]

    async def _run(self) -> None:
        while not self.stopping.is_set():
            await self.poll_once()
            delay = next_delay(
                self.settings.interval,
                self.settings.jitter,
                self.failures,
                self.settings.max_backoff,
                self.rand,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def poll_once(self, now: datetime | None = None) -> str:
        """One poll; answers its result (``ok``, ``source_error``, ``timeout``,
        ``store_error`` or ``error``) and never raises but for cancellation."""
        started = time.monotonic()
        now = now or datetime.now(UTC)
        try:
            enqueued, held, bookings = await self._poll(now)
        except SourceError as exc:
            result, error = "source_error", _one_line(exc)
        except TimeoutError:
            result = "timeout"
            error = f"reading the source took longer than {self.settings.timeout:g}s"
        except StoreError as exc:
            result, error = "store_error", f"store: {_one_line(exc)}"
        except Exception as exc:
            log.exception("poll failed unexpectedly", extra={"source": self.name})
            result, error = "error", f"{type(exc).__name__}: {_one_line(exc)}"
        else:
            result, error = "ok", None
        elapsed = time.monotonic() - started
        self.polls += 1
        self.metrics.runs.labels(self.name, result).inc()
        self.metrics.duration.labels(self.name).observe(elapsed)
        if error is None:
            self._succeeded(enqueued, held, bookings, elapsed)
        else:
            self._failed(result, error, now)
        return result

    # --- internals ------------------------------------------------------------------

    async def _poll(self, now: datetime) -> tuple[int, int, int]:
        cursor = await self.thread.run(self.store.get_cursor, self.name)
        first, last = poll_window(now, self.zone, self.settings.lookback_days, cursor)
        bookings = await self._read(first, last)
        kodebookings = [b.kodebooking for b in bookings]
        progress = await self.thread.run(self.store.task_progress, kodebookings)
        plan = plan_visits(bookings, progress, self.zone, self.settings.channel)
        self.writing = True
        try:
            created = await self._store(plan, cursor_value(last, now))
        finally:
            self.writing = False
        self.settled = settled_steps(bookings, progress, plan)
        return created, plan.held, len(bookings)

    async def _read(self, first: date, last: date) -> list[Booking]:
        if self._reading is not None and not self._reading.done():
            raise SourceError("the previous read has not finished yet (the database is slow)")
        loop = asyncio.get_running_loop()
        stop = threading.Event()  # set when this read is given up on: no query starts after
        call = functools.partial(self.source.read, first, last, dict(self.settled), stop)
        reading = loop.run_in_executor(self._executor, call)
        reading.add_done_callback(_retrieve)
        self._reading = reading
        try:
            return await asyncio.wait_for(asyncio.shield(reading), self.settings.timeout)
        except BaseException:  # timed out or cancelled (drain): let the thread wind down
            stop.set()
            raise

    async def _store(self, plan: Plan, cursor: str) -> int:
        sync = self.store.sync_visits
        try:
            results = await self.thread.run(
                sync, self.name, plan.progress, plan.messages, cursor, self.owner
            )
        except InvalidMessage as exc:
            # One visit's messages refused (e.g. a prerequisite purged meanwhile) must not
            # stop every other visit: store them one by one, then move the cursor.
            log.error(
                "the batch was refused; storing it visit by visit",
                extra={"source": self.name, "error": _one_line(exc)},
            )
            results = []
            for kb, (entries, messages) in _by_visit(plan).items():
                try:
                    results += await self.thread.run(
                        sync, self.name, {kb: entries}, messages, None, self.owner
                    )
                except InvalidMessage as refused:
                    log.error(
                        "a visit's messages were refused; it is tried again next poll",
                        extra={"source": self.name, "kodebooking": kb, "error": str(refused)},
                    )
                    reason = f"not stored: {_one_line(refused)}"
                    held = {step_of(m.key): {"status": "held", "reason": reason} for m in messages}
                    await self.thread.run(sync, self.name, {kb: held}, [], None, self.owner)
            await self.thread.run(sync, self.name, {}, [], cursor, self.owner)
        return sum(1 for r in results if r.created)

    def _succeeded(self, enqueued: int, held: int, bookings: int, elapsed: float) -> None:
        if self.failures:
            log.info(
                "source recovered",
                extra={"source": self.name, "failed_polls": self.failures},
            )
        self.failures = 0
        self.failing_since = None
        self.last_error = None
        self.metrics.enqueued.labels(self.name).inc(enqueued)
        self.metrics.held.labels(self.name).set(held)
        self.metrics.last_success.labels(self.name).set(time.time())
        level = logging.INFO if enqueued else logging.DEBUG
        log.log(
            level,
            "polled",
            extra={
                "source": self.name,
                "bookings": bookings,
                "enqueued": enqueued,
                "held": held,
                "seconds": round(elapsed, 3),
            },
        )

    def _failed(self, result: str, error: str, now: datetime) -> None:
        self.failures += 1
        self.failing_since = self.failing_since or now
        self.last_error = error
        if result in ("source_error", "timeout"):
            self.metrics.source_errors.labels(self.name).inc()
        retry_in = backoff_ceiling(
            self.failures,
            self.settings.interval,
            max(self.settings.max_backoff, self.settings.interval),
        )
        log.warning(
            "poll failed; retrying",
            extra={
                "source": self.name,
                "result": result,
                "error": error,
                "failures": self.failures,
                "retry_in": round(retry_in, 1),
            },
        )


def _by_visit(
    plan: Plan,
) -> dict[str, tuple[dict[str, dict[str, Any]], list[NewMessage]]]:
    grouped: dict[str, tuple[dict[str, dict[str, Any]], list[NewMessage]]] = {
        kb: (entries, []) for kb, entries in plan.progress.items()
    }
    for message in plan.messages:
        kb = message.group_key or message.key.split(":", 1)[0]
        grouped.setdefault(kb, ({}, []))[1].append(message)
    return grouped


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Consume the outcome of a read nobody awaits any more (it timed out)."""
    if not future.cancelled():
        future.exception()


# --- the role -----------------------------------------------------------------------------


class Poller:
    def __init__(self, context: Context, source_factory: SourceFactory = KhanzaSource) -> None:
        self.ctx = context
        self.settings = context.settings
        self.source_factory = source_factory
        self.metrics = PollerMetrics(context.metrics.registry)
        self.loops: dict[str, SourceLoop] = {}
        self.refused: dict[str, str] = {}  # source → why it does not run
        self.changed = asyncio.Event()
        self.draining = False

    # --- the Role protocol ------------------------------------------------------------

    async def start(self) -> list[asyncio.Task[None]]:
        for name in self.settings.sources:
            self._start_loop(name)
        if not self.settings.sources:
            log.warning("no sources configured; the poller idles")
        return [asyncio.create_task(self._supervise(), name="poller")]

    async def drain(self, timeout: float) -> None:
        self.draining = True
        loops = list(self.loops.values())
        await asyncio.gather(*(loop.drain(timeout) for loop in loops))

    async def reload(self, settings: Settings) -> None:
        old = self.settings
        self.settings = settings
        for name in set(old.sources) | set(settings.sources):
            if self._identity(old, name) == self._identity(settings, name):
                continue
            loop = self.loops.pop(name, None)
            self.refused.pop(name, None)
            if loop is not None:
                await loop.drain(settings.roles.poller.drain_timeout)
            if name in settings.sources:
                self._start_loop(name)
            log.info("source reloaded", extra={"source": name})
        self.changed.set()

    def problems(self) -> list[str]:
        out = [p for loop in self.loops.values() for p in loop.problems()]
        out += [f"source {name}: {why}" for name, why in sorted(self.refused.items())]
        return out

    # --- internals ------------------------------------------------------------------

    @staticmethod
    def _identity(settings: Settings, name: str) -> tuple[Any, ...] | None:
        """What a source's loop depends on; a change restarts the loop."""
        source = settings.sources.get(name)
        if source is None:
            return None
        channel = settings.channels.get(source.channel)
        return (source, source.timezone or settings.timezone, channel and channel.kind)

    def _start_loop(self, name: str) -> None:
        source = self.settings.sources[name]
        channel = self.settings.channels.get(source.channel)
        if channel is None or channel.kind != CHANNEL_KIND:
            kind = channel.kind if channel is not None else "missing"
            why = f"channel {source.channel!r} is {kind}, not {CHANNEL_KIND}: not polled"
            log.error("source not started", extra={"source": name, "error": why})
            self.refused[name] = why
            return
        zone = ZoneInfo(source.timezone or self.settings.timezone)
        loop = SourceLoop(
            name,
            source,
            zone,
            self.source_factory(name, source, zone),
            self.ctx.thread,
            self.metrics,
            self.ctx.owner,
        )
        loop.start()
        self.loops[name] = loop
        log.info(
            "polling",
            extra={
                "source": name,
                "kind": source.kind,
                "channel": source.channel,
                "timezone": str(zone),
                "interval": source.interval,
            },
        )

    async def _supervise(self) -> None:
        """Fail loudly when a poll loop ends on its own (they only end when drained)."""
        while True:
            watched = {loop.task for loop in self.loops.values() if loop.task is not None}
            self.changed.clear()
            changed = asyncio.ensure_future(self.changed.wait())
            try:
                done, _ = await asyncio.wait(
                    [*watched, changed], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
            current = {loop.task for loop in self.loops.values()}
            for task in done:
                if task is changed or task not in current or self.draining:
                    continue
                error = None if task.cancelled() else task.exception()
                raise RuntimeError(f"{task.get_name()} ended unexpectedly: {error!r}") from error
