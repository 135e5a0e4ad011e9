"""One channel's delivery loop inside a dispatcher process.

A feeder claims batches of due messages into a local queue; ``concurrency``
workers, each with its own sender (connection), take from the queue, wait for
the channel's shared rate limit and its circuit breaker, and send; a recorder
writes outcomes back in batches; a renewer keeps the leases of held messages
alive. On drain: stop claiming, release what was not started (a send waiting
for a rate-limit token included), let sends in flight finish until the
deadline, release the rest, flush the outcomes.

What an answer becomes is decided here, where the claimed message and the
channel's retry policy are (``settle``): delivered, failed (refused, or retries
exhausted) or retried at a time; the store writes it, guarded by the lease. A peer that
has no record of an earlier message this one needs (``awaits_predecessor``) is
waited for without counting an attempt, and, once per message, the earlier
messages of its group that are recorded delivered are sent again first. For a
kind whose messages belong to a tracked item, the kind's progress rule turns
each result into the item's progress entry, written with it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from daemon.channels.base import Channel, CountsTokens, Envelope, Outcome, Sender
from daemon.channels.kind import ChannelSettings
from daemon.channels.registry import kind_of
from daemon.domain.clock import SYSTEM_CLOCK, Clock
from daemon.domain.errors import StoreError, StoreUnavailable
from daemon.domain.messages import (
    AttemptResult,
    ClaimedMessage,
    Delivered,
    Failed,
    RecordResult,
    Released,
)
from daemon.resilience.backoff import Backoff, RetryPolicy
from daemon.resilience.breaker import BreakerState, CircuitBreaker
from daemon.resilience.ratelimit import Bucket
from daemon.roles.prefetch import Prefetch
from daemon.roles.settle import settle
from daemon.runtime.metrics import DispatcherMetrics
from daemon.store.aio import AsyncStore

log = logging.getLogger("outboxd.delivery")

BUSY_POLL = 0.005  # seconds between claims right after activity
IDLE_POLL = 0.05  # the longest wait between claims when nothing is due (no wake-ups)
NOTIFIED_IDLE_POLL = 1.0  # the same when the store wakes the loop (NOTIFY, the doorbell)
STORE_RETRY = 1.0  # first wait after the database failed a unit of work
RECORD_GATHER = 0.005  # seconds to gather outcomes when only a few are waiting
BREAKER_REFRESH = 30.0  # seconds between reports of a breaker that stays open
_STOP = None
TOKEN_RESULTS = ("ok", "refused", "failed", "invalid")  # an access token fetch's results


@dataclass(slots=True)
class _TokenWaiter:
    """A worker waiting for a rate-limit token: True when it has one, False when
    draining started first; since when it waits beyond the first request."""

    granted: asyncio.Future[bool]
    denied_at: float | None = None


class ChannelLoop:
    def __init__(
        self,
        name: str,
        settings: ChannelSettings,
        channel: Channel,
        store: AsyncStore,
        metrics: DispatcherMetrics,
        owner: str,
        notified: Callable[[], bool] = lambda: False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.clock = clock
        self.settings = settings
        self.channel = channel
        self.store = store
        self.metrics = metrics
        self.owner = owner
        self.notified = notified  # is the store's wake-up listener there now?
        self.policy = RetryPolicy.from_settings(settings.retry)
        self.progress_rule = kind_of(settings).progress  # the tracked items' progress, if any
        self.bucket = Bucket.for_rate(settings.rate, settings.burst) if settings.rate else None
        self.token_waiters: collections.deque[_TokenWaiter] = collections.deque()
        self.token_taker: asyncio.Task[None] | None = None  # takes tokens for the waiters
        self.breaker = CircuitBreaker(settings.breaker.failures, settings.breaker.cooldown)
        self.queue: asyncio.Queue[ClaimedMessage | None] = asyncio.Queue()
        self.held: dict[int, ClaimedMessage] = {}  # claimed and not yet recorded
        self.pending_outcomes: list[AttemptResult] = []
        # outcomes whose write was under way when the drain stopped the recorder
        self.unfinished: tuple[list[AttemptResult], asyncio.Future[RecordResult]] | None = None
        self.wake = asyncio.Event()  # something may be due: claim now
        self.space = asyncio.Event()  # room for more claims
        self.prefetch = Prefetch(settings.batch_size)
        self.started = 0  # sends started, a running count (the prefetch learns the pace)
        self.outcomes_ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.feeder: asyncio.Task[None] | None = None
        self.recorder: asyncio.Task[None] | None = None
        self.renewer: asyncio.Task[None] | None = None
        self.workers: list[asyncio.Task[None]] = []
        self.current: dict[asyncio.Task[None], ClaimedMessage] = {}
        self.sending = 0  # sends in progress (the in-flight gauge reads it at scrape time)
        self.last_error: str | None = None
        self._reports: set[asyncio.Task[None]] = set()  # breaker states on their way to the store
        self._reported_at = 0.0
        self._labels()

    def _labels(self) -> None:
        m, n = self.metrics, self.name
        m.in_flight.labels(n).set_function(lambda: self.sending)
        self.m_send_seconds = m.send_seconds.labels(n)
        self.m_claimed = m.claimed.labels(n)
        self.m_claim_seconds = m.claim_seconds.labels(n)
        self.m_lost = m.leases_lost.labels(n)
        self.m_breaker = m.breaker_state.labels(n)
        self.m_waits = m.rate_limit_waits.labels(n)
        self.m_wait_seconds = m.rate_limit_wait_seconds.labels(n)
        self.m_results = {
            r: m.deliveries.labels(n, r) for r in ("delivered", "retried", "rejected", "failed")
        }
        self.m_breaker.set(0)
        if isinstance(self.channel, CountsTokens):
            fetches = {r: m.token_fetches.labels(n, r) for r in TOKEN_RESULTS}
            self.channel.count_tokens(lambda result: fetches[result].inc())

    @property
    def capacity(self) -> int:
        """Messages waiting or being sent, at most: a batch, the prefetch reserve
        (what the connections send while a claim runs) and one per worker, so a
        whole batch is claimed while the reserve is still being sent."""
        return self.settings.batch_size + self.prefetch.reserve + self.settings.concurrency

    # --- the frame's child ----------------------------------------------------------

    def start(self) -> list[asyncio.Task[None]]:
        n = self.name
        self.workers = [
            asyncio.create_task(self._work(self.channel.sender()), name=f"{n}.worker.{i}")
            for i in range(self.settings.concurrency)
        ]
        self.feeder = asyncio.create_task(self._feed(), name=f"{n}.feeder")
        self.recorder = asyncio.create_task(self._record_loop(), name=f"{n}.recorder")
        self.renewer = asyncio.create_task(self._renew_loop(), name=f"{n}.renewer")
        return [self.feeder, self.recorder, self.renewer, *self.workers]

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.stopping.set()
        self.wake.set()
        self.space.set()
        if self.feeder is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                remaining = max(0.0, deadline - time.monotonic())
                await asyncio.wait_for(asyncio.shield(self.feeder), remaining)
        self._release_queued()
        for _ in self.workers:
            self.queue.put_nowait(_STOP)
        if self.workers:
            await asyncio.wait(self.workers, timeout=max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        side = [
            t for t in (self.feeder, self.recorder, self.renewer, self.token_taker) if t is not None
        ]
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        await self._flush_final()
        if self.breaker.state is not BreakerState.CLOSED:
            await self._send_breaker("closed", None)  # this process no longer sends
        await asyncio.gather(*self._reports, return_exceptions=True)
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
        while not self.stopping.is_set():
            now = self.clock.monotonic()
            if self.breaker.state is BreakerState.OPEN and self.breaker.retry_in(now) > 0:
                if now - self._reported_at > BREAKER_REFRESH:
                    self._report_breaker()  # still open: keep the report fresh
                await self._sleep(min(self.breaker.retry_in(now), BREAKER_REFRESH))
                continue
            room = self._room()
            if self.breaker.state is not BreakerState.CLOSED:
                room = min(room, 1) if not self.held else 0  # one probe at a time
            if room <= 0 or (self.held and room < self.settings.batch_size):
                self.space.clear()
                await self.space.wait()
                continue
            began = time.monotonic()
            self.wake.clear()  # a wake-up from now on may be for what this claim misses
            claimed = await self._claim(min(room, self.settings.batch_size))
            if claimed is None:  # the database failed it (and _claim waited): no sample
                continue
            ended = time.monotonic()
            if not claimed and self.breaker.state is BreakerState.OPEN:
                before = self.breaker.state
                self.breaker.cool(
                    self.clock.monotonic()
                )  # nothing to probe with: the next send will
                self._breaker_moved(before)
            self.prefetch.claimed(ended, self.started, ended - began)
            self.m_claim_seconds.observe(ended - began)
            if claimed:
                poll = BUSY_POLL
                self.m_claimed.inc(len(claimed))
                for message in claimed:
                    self.held[message.id] = message
                    self.queue.put_nowait(message)
                continue
            await self._wait_for_wake(poll)
            poll = min(poll * 2, NOTIFIED_IDLE_POLL if self.notified() else IDLE_POLL)

    def _room(self) -> int:
        """How many more to claim: up to ``capacity`` waiting to be sent or being
        sent, and never more than twice that held (claimed, outcome not yet
        written), so claims go on while the outcomes of the last are written."""
        unsent = self.queue.qsize() + len(self.current)
        return min(self.capacity - unsent, 2 * self.capacity - len(self.held))

    async def _claim(self, room: int) -> list[ClaimedMessage] | None:
        try:
            return await self.store.claim(
                [self.name],
                self.owner,
                room,
                self.settings.lease,
                ordered=(self.name,) if self.settings.ordered else (),
                **self._when(),
            )
        except StoreUnavailable as exc:
            self.metrics.loop_errors.labels("claim").inc()
            log.warning("claim failed; retrying", extra={"channel": self.name, "error": str(exc)})
            await self._sleep(STORE_RETRY)
            return None

    def _when(self) -> dict[str, datetime]:
        """The instant for a store call: none (the store reads the clock) unless the
        loop was handed a clock of its own."""
        at = self.clock.for_store()
        return {} if at is None else {"now": at}

    async def _wait_for_wake(self, timeout: float) -> None:
        """Until ``wake`` is set (at once if it is already), or ``timeout``."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when draining starts."""
        if not self.stopping.is_set():
            self.wake.clear()
            await self._wait_for_wake(seconds)

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
                if self.stopping.is_set():
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
        if not self.breaker.allow(self.clock.monotonic()):
            self._add_outcome(Released(message.id))
            return
        if self.bucket is not None and not await self._take_token():
            self._add_outcome(Released(message.id))  # draining: not sent
            return
        envelope = Envelope(
            message.id,
            message.key,
            message.kind,
            message.payload,
            message.attempts + 1,
            message.after_response,
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
        if outcome.awaits_predecessor:
            outcome = await self._resend_predecessors(message, outcome)
        self._add_outcome(settle(message, outcome, self.policy, self.progress_rule, self.clock.now))

    def _judge(self, outcome: Outcome) -> None:
        before = self.breaker.state
        if outcome.transport_error:
            self.last_error = outcome.detail
            self.breaker.failure(self.clock.monotonic())
        else:
            self.breaker.success()
        self._breaker_moved(before)

    def _breaker_moved(self, before: BreakerState) -> None:
        after = self.breaker.state
        if after is not before:
            self.m_breaker.set(int(after))
            level = logging.WARNING if after is BreakerState.OPEN else logging.INFO
            log.log(level, "circuit breaker %s", after.name.lower(), extra={"channel": self.name})
            if after is BreakerState.OPEN:
                self._release_queued()
            self._report_breaker()

    def _report_breaker(self) -> None:
        """Tell the store the breaker's state (for alerts on breakers open too long),
        without holding up the send that changed it."""
        self._reported_at = self.clock.monotonic()
        state = self.breaker.state.name.lower().replace("_", "-")
        task = asyncio.create_task(self._send_breaker(state, self.last_error))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _send_breaker(self, state: str, detail: str | None) -> None:
        with contextlib.suppress(StoreError):
            await self.store.report_breaker(self.name, self.owner, state, detail)

    async def _take_token(self) -> bool:
        """Wait for a token of the channel's rate limit; False when draining starts first.

        The workers waiting for one queue up; one request at a time takes as many
        as are waiting from the store, in one transaction (the bucket's row is
        locked while it changes, so the limit holds across processes), and hands
        them out in order; when none was granted it waits the time the store said
        and asks again."""
        if self.stopping.is_set():
            return False
        waiter = _TokenWaiter(asyncio.get_running_loop().create_future())
        self.token_waiters.append(waiter)
        if self.token_taker is None or self.token_taker.done():
            self.token_taker = asyncio.create_task(self._take_tokens(), name=f"{self.name}.tokens")
        return await waiter.granted

    async def _take_tokens(self) -> None:
        assert self.bucket is not None
        try:
            while not self.stopping.is_set():
                waiting = [w for w in self.token_waiters if not w.granted.done()]
                self.token_waiters = collections.deque(waiting)
                if not waiting:
                    return
                try:
                    granted, wait = await self.store.take_tokens(
                        self.name, len(waiting), self.bucket, **self._when()
                    )
                except StoreUnavailable:
                    self.metrics.loop_errors.labels("rate_limit").inc()
                    granted, wait = 0, STORE_RETRY
                now = time.monotonic()
                for _ in range(granted):
                    self._hand_token(self.token_waiters.popleft(), True, now)
                if granted:
                    continue
                for waiter in self.token_waiters:
                    if waiter.denied_at is None:
                        waiter.denied_at = now
                        self.m_waits.inc()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
        except Exception as exc:  # a bug: the workers waiting fail with it, loudly
            for waiter in self.token_waiters:
                if not waiter.granted.done():
                    waiter.granted.set_exception(exc)
            self.token_waiters.clear()
            raise
        finally:
            if self.stopping.is_set():
                now = time.monotonic()
                while self.token_waiters:
                    self._hand_token(self.token_waiters.popleft(), False, now)

    def _hand_token(self, waiter: _TokenWaiter, granted: bool, now: float) -> None:
        if waiter.denied_at is not None:
            self.m_wait_seconds.inc(now - waiter.denied_at)
        if not waiter.granted.done():  # a worker cancelled at the deadline: its token is lost
            waiter.granted.set_result(granted)

    # --- what an answer becomes -----------------------------------------------------

    async def _resend_predecessors(self, message: ClaimedMessage, outcome: Outcome) -> Outcome:
        """The peer lacks an earlier message of this one's group: send the ones
        recorded delivered again first (once per message); this one waits behind
        them (on an ordered channel; otherwise for the predecessor wait). Otherwise
        (done before, none, or the database down) it just waits."""
        if message.group_key is None:
            return outcome
        reason = f"the peer had no record of them: {outcome.detail}"
        try:
            resent = await self.store.resend_predecessors(
                self.owner, message.id, reason, **self._when()
            )
        except StoreUnavailable:
            self.metrics.loop_errors.labels("resend").inc()
            return outcome
        if not resent:
            return outcome
        log.warning(
            "the peer lost earlier messages of a group; sending them again first",
            extra={"channel": self.name, "message_id": message.id, "resent": len(resent)},
        )
        keys = ", ".join(key for _, key in resent)
        return Outcome.retry(
            f"{outcome.detail}; sent again first: {keys}",
            response=outcome.response,
            # ordered, it waits behind its group anyway; else give the chain its time
            retry_after=0.0 if self.settings.ordered else outcome.retry_after,
            awaits_predecessor=True,
        )

    # --- recording outcomes -------------------------------------------------------

    def _add_outcome(self, outcome: AttemptResult) -> None:
        self.pending_outcomes.append(outcome)
        self.outcomes_ready.set()

    async def _record_loop(self) -> None:
        backoff = Backoff(STORE_RETRY)
        while True:
            await self.outcomes_ready.wait()
            if (
                len(self.pending_outcomes) < self.settings.batch_size // 4
                and not self.stopping.is_set()
            ):
                # let a few more outcomes arrive: one write for many is much cheaper
                await asyncio.sleep(RECORD_GATHER)
            self.outcomes_ready.clear()
            if not await self._flush():
                await asyncio.sleep(backoff.next())
                self.outcomes_ready.set()
            else:
                backoff.reset()

    async def _flush(self) -> bool:
        batch, self.pending_outcomes = self.pending_outcomes, []
        if not batch:
            return True
        write = asyncio.ensure_future(self.store.record(self.owner, batch, **self._when()))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            # the drain stopped the recorder while the store wrote: the write goes on,
            # and the drain waits for it (``_flush_final``) before it returns
            self.unfinished = (batch, write)
            raise
        except StoreUnavailable:
            pass
        return self._written(batch, write)

    def _written(self, batch: list[AttemptResult], write: asyncio.Future[RecordResult]) -> bool:
        try:
            result = write.result()
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

    def _count(self, batch: Sequence[AttemptResult], recorded: dict[int, str]) -> None:
        counts = dict.fromkeys(self.m_results, 0)
        for outcome in batch:
            if outcome.id not in recorded or isinstance(outcome, Released):
                continue
            if isinstance(outcome, Delivered):
                counts["delivered"] += 1
            elif isinstance(outcome, Failed):
                counts["failed" if outcome.gave_up else "rejected"] += 1
            else:
                counts["retried"] += 1
        for result, count in counts.items():
            if count:
                self.m_results[result].inc(count)

    async def _flush_final(self) -> None:
        """Write the last outcomes (after the one being written when the recorder
        stopped, if any); a database that is down gets a few tries, then the leases
        expire and the messages are sent again (at least once)."""
        if self.unfinished is not None:
            batch, write = self.unfinished
            self.unfinished = None
            await asyncio.gather(write, return_exceptions=True)
            self._written(batch, write)
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
                renewed = await self.store.renew_leases(
                    self.owner, ids, self.settings.lease, **self._when()
                )
            except StoreUnavailable:
                self.metrics.loop_errors.labels("renew").inc()
                continue
            lost = set(ids) - set(renewed)
            in_flight = {m.id for m in self.current.values()}
            for message_id in lost - in_flight:
                if self.held.pop(message_id, None) is not None:
                    self.m_lost.inc()
