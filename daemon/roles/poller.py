"""The poller role: one poll loop per source, over the source contract
(``daemon.sources.base``), on the common frame.

Every ``interval`` (± ``jitter``) a loop reads its source on a worker thread of
its own, under the source's ``timeout``; looks up the progress of the items the
read covers; lets the source plan what to store; and stores the batch with
``sync_visits``, which merges the progress, enqueues the messages and moves the
source's cursor in one transaction. A poll that fails anywhere stores nothing
and moves nothing; the next poll reads again (keys make the repeat harmless).

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
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from daemon.config.settings import Settings
from daemon.domain.errors import StoreError
from daemon.domain.messages import InvalidMessage, NewMessage
from daemon.resilience.backoff import backoff_ceiling
from daemon.runtime.frame import ChildSpec, Context, RoleBase
from daemon.runtime.metrics import PollerMetrics
from daemon.sources.base import Batch, Reading, Source, SourceError, SourceSettings
from daemon.sources.registry import source_kind
from daemon.store.aio import AsyncStore

log = logging.getLogger("outboxd.poller")

FAILING_AFTER = 3  # failed polls in a row that make the source a /healthz problem

SourceFactory = Callable[[str, SourceSettings, ZoneInfo], Source]


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Consume the outcome of a read nobody awaits any more (it timed out)."""
    if not future.cancelled():
        future.exception()


class SourceLoop:
    """Polls one source until drained (a child of the poller on the frame)."""

    def __init__(
        self,
        name: str,
        settings: SourceSettings,
        source: Source,
        store: AsyncStore,
        metrics: PollerMetrics,
        owner: str,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.settings = settings
        self.source = source
        self.store = store
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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outboxd-{name}")
        self._reading: asyncio.Future[Reading] | None = None

    def start(self) -> list[asyncio.Task[None]]:
        self.task = asyncio.create_task(self._run(), name=f"poll:{self.name}")
        return [self.task]

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
        error: str | None
        try:
            enqueued, held, records = await self._poll(now)
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
            self._succeeded(enqueued, held, records, elapsed)
        else:
            self._failed(result, error, now)
        return result

    # --- internals ------------------------------------------------------------------

    async def _poll(self, now: datetime) -> tuple[int, int, int]:
        cursor = await self.store.get_cursor(self.name)
        reading = await self._read(cursor, now)
        progress = await self.store.task_progress(self.name, reading.items)
        batch = self.source.plan(reading, progress, now)
        self.writing = True
        try:
            created = await self._store(batch)
        finally:
            self.writing = False
        return created, batch.held, reading.count

    async def _read(self, cursor: str | None, now: datetime) -> Reading:
        if self._reading is not None and not self._reading.done():
            raise SourceError("the previous read has not finished yet (the database is slow)")
        loop = asyncio.get_running_loop()
        stop = threading.Event()  # set when this read is given up on: no query starts after
        call = functools.partial(self.source.read, cursor, now, stop)
        reading = loop.run_in_executor(self._executor, call)
        reading.add_done_callback(_retrieve)
        self._reading = reading
        try:
            return await asyncio.wait_for(asyncio.shield(reading), self.settings.timeout)
        except BaseException:  # timed out or cancelled (drain): let the thread wind down
            stop.set()
            raise

    async def _store(self, batch: Batch) -> int:
        sync = self.store.sync_visits
        try:
            results = await sync(
                self.name, batch.progress, batch.messages, batch.cursor, self.owner
            )
        except InvalidMessage as exc:
            # One item's messages refused (e.g. a prerequisite purged meanwhile) must not
            # stop every other item: store them one by one, then move the cursor.
            log.error(
                "the batch was refused; storing it item by item",
                extra={"source": self.name, "error": _one_line(exc)},
            )
            results = []
            for item, (entries, messages) in _by_item(batch).items():
                try:
                    results += await sync(self.name, {item: entries}, messages, None, self.owner)
                except InvalidMessage as refused:
                    log.error(
                        "an item's messages were refused; it is tried again next poll",
                        extra={"source": self.name, "item": item, "error": str(refused)},
                    )
                    reason = f"not stored: {_one_line(refused)}"
                    held = {
                        m.step: {"status": "held", "reason": reason}
                        for m in messages
                        if m.step is not None
                    }
                    await sync(self.name, {item: held}, [], None, self.owner)
            await sync(self.name, {}, [], batch.cursor, self.owner)
        return sum(1 for r in results if r.created)

    def _succeeded(self, enqueued: int, held: int, records: int, elapsed: float) -> None:
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
                "records": records,
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


def _by_item(batch: Batch) -> dict[str, tuple[dict[str, dict[str, Any]], list[NewMessage]]]:
    grouped: dict[str, tuple[dict[str, dict[str, Any]], list[NewMessage]]] = {
        item: (entries, []) for item, entries in batch.progress.items()
    }
    for message in batch.messages:
        item = message.visit or message.group_key or message.key
        grouped.setdefault(item, ({}, []))[1].append(message)
    return grouped


# --- the role -----------------------------------------------------------------------------


def _build_source(name: str, settings: SourceSettings, zone: ZoneInfo) -> Source:
    return source_kind(settings).build(name, settings, zone)


class Poller(RoleBase):
    def __init__(self, context: Context, source_factory: SourceFactory = _build_source) -> None:
        self.ctx = context
        self.source_factory = source_factory
        self.metrics = PollerMetrics(context.metrics.registry)
        if not context.settings.sources:
            log.warning("no sources configured; the poller idles")

    def children(self, settings: Settings) -> list[ChildSpec]:
        specs = []
        for name, source in settings.sources.items():
            # the zone it runs in, inherited or its own, is part of what it is built from
            timezone = source.timezone or settings.timezone
            effective = source.model_copy(update={"timezone": timezone})
            zone = ZoneInfo(timezone)
            build = functools.partial(self._loop, name, source, zone)
            specs.append(ChildSpec(f"source {name}", effective, build))
        return specs

    def _loop(self, name: str, settings: SourceSettings, zone: ZoneInfo) -> SourceLoop:
        loop = SourceLoop(
            name,
            settings,
            self.source_factory(name, settings, zone),
            self.ctx.store,
            self.metrics,
            self.ctx.owner,
        )
        log.info(
            "polling",
            extra={
                "source": name,
                "kind": settings.kind,
                "channel": settings.channel,
                "timezone": str(zone),
                "interval": settings.interval,
            },
        )
        return loop
