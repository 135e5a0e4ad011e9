"""One channel's delivery loop inside a dispatcher process.

A feeder claims batches of due messages into a local queue; ``concurrency``
workers, each with its own sender (connection), take from the queue, wait for
the channel's shared rate limit and its circuit breaker, and send; a recorder
writes outcomes back in batches; a renewer keeps the leases of held messages
alive. On drain: stop claiming, release what was not started, let sends in
flight finish until the deadline, release the rest, flush the outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from daemon.channels.base import Envelope, Outcome, Sender, Verdict
from daemon.channels.registry import Channel, ChannelSettings
from daemon.metrics import Metrics
from daemon.resilience.backoff import RetryPolicy
from daemon.resilience.breaker import BreakerState, CircuitBreaker
from daemon.resilience.ratelimit import Bucket
from daemon.roles.prefetch import Prefetch
from daemon.store import StoreUnavailable
from daemon.store.thread import StoreRunner
from daemon.store.types import (
    ClaimedMessage,
    Delivered,
    Failed,
    Released,
    RetryLater,
)
from daemon.store.types import (
    Outcome as StoreOutcome,
)

log = logging.getLogger("outboxd.delivery")

BUSY_POLL = 0.005  # seconds between claims right after activity
IDLE_POLL = 0.05  # the longest wait between claims when nothing is due (no NOTIFY)
NOTIFIED_IDLE_POLL = 1.0  # the same when PostgreSQL NOTIFY wakes the loop
STORE_RETRY = 1.0  # first wait after the database failed a unit of work
RECORD_GATHER = 0.005  # seconds to gather outcomes when only a few are waiting
_STOP = None


def to_store_outcome(message_id: int, outcome: Outcome) -> StoreOutcome:
    if outcome.verdict is Verdict.DELIVERED:
        return Delivered(message_id, outcome.response)
    if outcome.verdict is Verdict.RETRY:
        return RetryLater(message_id, outcome.detail, outcome.response, outcome.retry_after)
    return Failed(message_id, outcome.detail, outcome.response)


class ChannelLoop:
    def __init__(
        self,
        name: str,
        settings: ChannelSettings,
        channel: Channel,
        thread: StoreRunner,
        metrics: Metrics,
        owner: str,
        notified: bool = False,
    ) -> None:
        self.name = name
        self.settings = settings
        self.channel = channel
        self.thread = thread
        self.store = thread.store
        self.metrics = metrics
        self.owner = owner
        self.idle_poll = NOTIFIED_IDLE_POLL if notified else IDLE_POLL
        self.policy = {name: RetryPolicy.from_settings(settings.retry)}
        self.track_visits = settings.kind == "bpjs_antrean"  # outcomes update the visits
        self.bucket = Bucket.for_rate(settings.rate, settings.burst) if settings.rate else None
        self.breaker = CircuitBreaker(settings.breaker.failures, settings.breaker.cooldown)
        self.queue: asyncio.Queue[ClaimedMessage | None] = asyncio.Queue()
        self.held: dict[int, ClaimedMessage] = {}  # claimed and not yet recorded
        self.pending_outcomes: list[StoreOutcome] = []
        self.wake = asyncio.Event()  # something may be due: claim now
        self.space = asyncio.Event()  # room for more claims
        self.prefetch = Prefetch(settings.batch_size)
        self.started = 0  # sends started, a running count (the prefetch learns the pace)
        self.outcomes_ready = asyncio.Event()
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []
        self.workers: list[asyncio.Task[None]] = []
        self.current: dict[asyncio.Task[None], ClaimedMessage] = {}
        self.sending = 0  # sends in progress (the in-flight gauge reads it at scrape time)
        self.last_error: str | None = None
        self._labels()

    def _labels(self) -> None:
        m, n = self.metrics, self.name
        m.in_flight.labels(n).set_function(lambda: self.sending)
        self.m_send_seconds = m.send_seconds.labels(n)
        self.m_claimed = m.claimed.labels(n)
        self.m_lost = m.leases_lost.labels(n)
        self.m_breaker = m.breaker_state.labels(n)
        self.m_waits = m.rate_limit_waits.labels(n)
        self.m_wait_seconds = m.rate_limit_wait_seconds.labels(n)
        self.m_results = {
            r: m.deliveries.labels(n, r) for r in ("delivered", "retried", "rejected", "failed")
        }
        self.m_breaker.set(0)

    @property
    def capacity(self) -> int:
        """Messages waiting or being sent, at most: a batch, the prefetch reserve
        (what the connections send while a claim runs) and one per worker, so a
        whole batch is claimed while the reserve is still being sent."""
        return self.settings.batch_size + self.prefetch.reserve + self.settings.concurrency

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> list[asyncio.Task[None]]:
        n = self.name
        self.workers = [
            asyncio.create_task(self._work(self.channel.sender()), name=f"{n}.worker.{i}")
            for i in range(self.settings.concurrency)
        ]
        self.tasks = [
            asyncio.create_task(self._feed(), name=f"{n}.feeder"),
            asyncio.create_task(self._record_loop(), name=f"{n}.recorder"),
            asyncio.create_task(self._renew_loop(), name=f"{n}.renewer"),
            *self.workers,
        ]
        return self.tasks

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.stopping = True
        self.wake.set()
        self.space.set()
        feeder = self.tasks[0]
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(feeder), max(0.0, deadline - time.monotonic()))
        self._release_queued()
        for _ in self.workers:
            self.queue.put_nowait(_STOP)
        if self.workers:
            await asyncio.wait(self.workers, timeout=max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        for task in self.tasks[:3]:
            task.cancel()
        await asyncio.gather(*self.tasks[:3], return_exceptions=True)
        await self._flush_final()
        await self.channel.close()
        with contextlib.suppress(KeyError):  # its function holds this loop
            self.metrics.in_flight.remove(self.name)

    def _release_queued(self) -> None:
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if message is not None:
                self._add_outcome(Released(message.id))

    def problems(self) -> list[str]:
        out = []
        if self.breaker.state is BreakerState.OPEN:
            out.append(f"channel {self.name}: circuit breaker open ({self.last_error})")
        return out

    # --- feeder -------------------------------------------------------------------

    async def _feed(self) -> None:
        poll = BUSY_POLL
        while not self.stopping:
            now = time.monotonic()
            if self.breaker.state is BreakerState.OPEN and self.breaker.retry_in(now) > 0:
                await self._sleep(self.breaker.retry_in(now))
                continue
            room = self._room()
            if self.breaker.state is not BreakerState.CLOSED:
                room = min(room, 1) if not self.held else 0  # one probe at a time
            if room <= 0 or (self.held and room < self.settings.batch_size):
                self.space.clear()
                await self.space.wait()
                continue
            began = time.monotonic()
            claimed = await self._claim(min(room, self.settings.batch_size))
            if claimed is None:  # the database failed it (and _claim waited): no sample
                continue
            ended = time.monotonic()
            self.prefetch.claimed(ended, self.started, ended - began)
            if claimed:
                poll = BUSY_POLL
                self.m_claimed.inc(len(claimed))
                for message in claimed:
                    self.held[message.id] = message
                    self.queue.put_nowait(message)
                continue
            await self._wait_for_wake(poll)
            poll = min(poll * 2, self.idle_poll)

    def _room(self) -> int:
        """How many more to claim: up to ``capacity`` waiting to be sent or being
        sent, and never more than twice that held (claimed, outcome not yet
        written), so claims go on while the outcomes of the last are written."""
        unsent = self.queue.qsize() + len(self.current)
        return min(self.capacity - unsent, 2 * self.capacity - len(self.held))

    async def _claim(self, room: int) -> list[ClaimedMessage] | None:
        try:
            return await self.thread.run(
                self.store.claim,
                [self.name],
                self.owner,
                room,
                self.settings.lease,
                ordered=(self.name,) if self.settings.ordered else (),
            )
        except StoreUnavailable as exc:
            self.metrics.loop_errors.labels("claim").inc()
            log.warning("claim failed; retrying", extra={"channel": self.name, "error": str(exc)})
            await self._sleep(STORE_RETRY)
            return None

    async def _wait_for_wake(self, timeout: float) -> None:
        self.wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when draining starts."""
        await self._wait_for_wake(seconds) if not self.stopping else None

    # --- workers ------------------------------------------------------------------

    async def _work(self, sender: Sender) -> None:
        me = asyncio.current_task()
        assert me is not None
        try:
            while True:
                message = await self.queue.get()
                if message is None:
                    return
                self.started += 1
                if self.queue.qsize() <= self.prefetch.reserve:
                    self.space.set()  # room for a batch: the feeder may claim it now
                if self.held.get(message.id) is not message:
                    continue  # its lease was lost while it waited (and maybe claimed again)
                if self.stopping:
                    self._add_outcome(Released(message.id))
                    continue
                self.current[me] = message
                try:
                    await self._deliver(sender, message)
                except asyncio.CancelledError:
                    self._add_outcome(Released(message.id))  # the drain deadline passed
                    raise
                finally:
                    self.current.pop(me, None)
        finally:
            await sender.close()

    async def _deliver(self, sender: Sender, message: ClaimedMessage) -> None:
        if not self.breaker.allow(time.monotonic()):
            self._add_outcome(Released(message.id))
            return
        if self.bucket is not None:
            await self._take_token()
        envelope = Envelope(
            message.id, message.key, message.kind, message.payload, message.attempts + 1
        )
        self.sending += 1
        started = time.perf_counter()
        try:
            outcome = await sender.send(envelope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "channel raised; treating as a transient failure", extra={"channel": self.name}
            )
            outcome = Outcome.retry(f"internal channel error: {exc!r}", transport_error=True)
        finally:
            self.sending -= 1
            self.m_send_seconds.observe(time.perf_counter() - started)
        self._judge(outcome)
        self._add_outcome(to_store_outcome(message.id, outcome))

    def _judge(self, outcome: Outcome) -> None:
        before = self.breaker.state
        if outcome.transport_error:
            self.last_error = outcome.detail
            self.breaker.failure(time.monotonic())
        else:
            self.breaker.success()
        after = self.breaker.state
        if after is not before:
            self.m_breaker.set(int(after))
            level = logging.WARNING if after is BreakerState.OPEN else logging.INFO
            log.log(level, "circuit breaker %s", after.name.lower(), extra={"channel": self.name})
            if after is BreakerState.OPEN:
                self._release_queued()

    async def _take_token(self) -> None:
        assert self.bucket is not None
        waited = 0.0
        while True:
            try:
                granted, wait = await self.thread.run(
                    self.store.take_tokens, self.name, 1, self.bucket
                )
            except StoreUnavailable:
                self.metrics.loop_errors.labels("rate_limit").inc()
                granted, wait = 0, STORE_RETRY
            if granted:
                break
            if waited == 0.0:
                self.m_waits.inc()
            await asyncio.sleep(wait)
            waited += wait
        if waited:
            self.m_wait_seconds.inc(waited)

    # --- recording outcomes -------------------------------------------------------

    def _add_outcome(self, outcome: StoreOutcome) -> None:
        self.pending_outcomes.append(outcome)
        self.outcomes_ready.set()

    async def _record_loop(self) -> None:
        delay = STORE_RETRY
        while True:
            await self.outcomes_ready.wait()
            if len(self.pending_outcomes) < self.settings.batch_size // 4 and not self.stopping:
                # let a few more outcomes arrive: one write for many is much cheaper
                await asyncio.sleep(RECORD_GATHER)
            self.outcomes_ready.clear()
            if not await self._flush():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self.outcomes_ready.set()
            else:
                delay = STORE_RETRY

    async def _flush(self) -> bool:
        batch, self.pending_outcomes = self.pending_outcomes, []
        if not batch:
            return True
        try:
            result = await self.thread.run(
                self.store.record, self.owner, batch, self.policy, track_visits=self.track_visits
            )
        except StoreUnavailable as exc:
            self.metrics.loop_errors.labels("record").inc()
            log.warning(
                "could not record outcomes; will retry",
                extra={"channel": self.name, "error": str(exc)},
            )
            self.pending_outcomes[:0] = batch
            return False
        self._count(batch, result.recorded)
        if result.lost:
            self.m_lost.inc(len(result.lost))
            log.warning(
                "leases lost before outcomes were recorded",
                extra={"channel": self.name, "ids": result.lost[:20]},
            )
        for outcome in batch:
            self.held.pop(outcome.id, None)
        self.space.set()
        if any(isinstance(o, Delivered) for o in batch):
            self.wake.set()  # a dependent may be due now
        return True

    def _count(self, batch: Sequence[StoreOutcome], recorded: dict[int, str]) -> None:
        counts = dict.fromkeys(self.m_results, 0)
        for outcome in batch:
            status = recorded.get(outcome.id)
            if status is None or isinstance(outcome, Released):
                continue
            if isinstance(outcome, Delivered):
                counts["delivered"] += 1
            elif isinstance(outcome, Failed):
                counts["rejected"] += 1
            elif status == "failed":
                counts["failed"] += 1
            else:
                counts["retried"] += 1
        for result, count in counts.items():
            if count:
                self.m_results[result].inc(count)

    async def _flush_final(self) -> None:
        """Write the last outcomes; a database that is down gets a few tries,
        then the leases expire and the messages are sent again (at least once)."""
        for _ in range(5):
            if await self._flush():
                return
            await asyncio.sleep(0.5)
        log.error(
            "outcomes not recorded at shutdown",
            extra={"channel": self.name, "count": len(self.pending_outcomes)},
        )

    # --- leases -------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        interval = self.settings.lease / 3
        while True:
            await asyncio.sleep(interval)
            ids = list(self.held)
            if not ids:
                continue
            try:
                renewed = await self.thread.run(
                    self.store.renew_leases, self.owner, ids, self.settings.lease
                )
            except StoreUnavailable:
                self.metrics.loop_errors.labels("renew").inc()
                continue
            lost = set(ids) - set(renewed)
            in_flight = {m.id for m in self.current.values()}
            for message_id in lost - in_flight:
                if self.held.pop(message_id, None) is not None:
                    self.m_lost.inc()
