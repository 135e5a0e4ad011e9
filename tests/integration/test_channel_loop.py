"""One channel's delivery loop in this process, on a real store, with a channel
that answers as the test says and a clock the test moves: retries come due when
the clock says so (not after a real wait), the peer's own wait is kept, attempts
run out, the circuit breaker opens, cools and probes, and a drain gives back
what it did not send. Each on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from daemon.channels.base import Envelope, Outcome
from daemon.config.database import DatabaseSettings
from daemon.config.loader import parse_config
from daemon.domain.messages import NewMessage
from daemon.resilience.backoff import backoff_ceiling
from daemon.resilience.breaker import BreakerState
from daemon.roles import delivery
from daemon.roles.delivery import ChannelLoop
from daemon.runtime.metrics import DispatcherMetrics, Metrics
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.models import Message
from daemon.store.sync import Store
from tests.support.clock import FakeClock
from tests.support.waiting import eventually, stays

pytestmark = pytest.mark.timeout(60)
Answer = Callable[[Envelope], Outcome]


class ScriptedChannel:
    """A channel whose every send is answered by ``answer``; each send is kept."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[Envelope] = []
        self.gate: asyncio.Event | None = None  # when set up, a send waits for it

    def sender(self) -> ScriptedChannel:
        return self

    async def send(self, envelope: Envelope) -> Outcome:
        self.sent.append(envelope)
        if self.gate is not None:
            await self.gate.wait()
        return self.answer(envelope)

    async def close(self) -> None:
        pass

    def keys(self) -> list[str]:
        return [e.key for e in self.sent]


class CountedClaims:
    """The async store, with the claims the loop made counted: "nothing more was
    sent" is told after the loop looked again, not after a while."""

    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self.claims = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        claimed = await self._store.claim(*args, **kwargs)
        self.claims += 1
        return claimed

    async def looked_again(self, times: int = 3) -> None:
        seen = self.claims
        await eventually(lambda: self.claims >= seen + times, f"{times} more claims")


def _settings(options: str) -> Any:
    text = (
        "database: sqlite:///unused.db\nchannels:\n"
        f"  hie: {{kind: mllp, host: 127.0.0.1, port: 9, {options}}}\n"
    )
    return parse_config(text).channels["hie"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rows(store: Store) -> Iterator[Callable[[], list[Message]]]:
    def read() -> list[Message]:
        return list(Message.select().order_by(Message.id))

    yield read


@pytest.fixture
async def run_loop(db_url: str, clock: FakeClock) -> AsyncIterator[Callable[..., Any]]:
    """Starts a loop on ``db_url`` for channel ``hie`` (the options given), with the
    fake clock; drains and closes it at the end."""
    started: list[tuple[ChannelLoop, AsyncStore]] = []

    async def start(channel: ScriptedChannel, options: str, keys: list[str]) -> ChannelLoop:
        astore = open_async_store(DatabaseSettings(url=db_url), in_process=False)
        messages = [NewMessage("hie", key, b"MSH|" + key.encode()) for key in keys]
        await astore.enqueue_many(messages, now=clock.now())
        counted = CountedClaims(astore)
        loop = ChannelLoop(
            "hie",
            _settings(options),
            channel,  # type: ignore[arg-type]
            counted,  # type: ignore[arg-type]
            DispatcherMetrics(Metrics().registry),
            "loop-test",
            clock=clock,
        )
        started.append((loop, astore))
        loop.start()
        return loop

    yield start
    for loop, astore in started:
        await loop.drain(5)
        await astore.aclose()


def _moved(loop: ChannelLoop, clock: FakeClock, seconds: float) -> None:
    """The clock moves on; the loop is told to look (as its next poll would)."""
    clock.advance(seconds)
    loop.wake.set()


async def test_a_retry_comes_due_when_the_clock_reaches_it_not_before(run_loop, clock, rows):
    answers = iter([Outcome.retry("AE: busy"), Outcome.delivered("AA")])
    channel = ScriptedChannel(lambda _: next(answers))
    loop = await run_loop(channel, "retry: {backoff: 60s, max_backoff: 60s}", ["a1"])
    started = clock.now()

    [row] = await eventually(
        lambda: [r for r in rows() if r.attempts == 1 and r.lease_owner is None], "retried"
    )
    assert row.status == "pending" and row.last_error == "AE: busy"
    ceiling = timedelta(seconds=backoff_ceiling(1, 60.0, 60.0))
    assert started <= row.next_attempt_at <= started + ceiling  # the fake clock's time
    await loop.store.looked_again()
    assert channel.keys() == ["a1"]  # not due yet: no second send

    _moved(loop, clock, 61)
    [row] = await eventually(lambda: [r for r in rows() if r.status == "sent"], "delivered")
    assert channel.keys() == ["a1", "a1"]
    assert [e.attempt for e in channel.sent] == [1, 2]
    assert row.attempts == 2 and row.response == "AA"
    assert row.sent_at == started + timedelta(seconds=61)


async def test_the_peers_own_wait_is_kept_to_the_second(run_loop, clock, rows):
    answers = iter([Outcome.retry("429", retry_after=120.0), Outcome.delivered("ok")])
    channel = ScriptedChannel(lambda _: next(answers))
    loop = await run_loop(channel, "retry: {backoff: 1s, max_backoff: 1h}", ["k"])
    started = clock.now()
    [row] = await eventually(
        lambda: [r for r in rows() if r.attempts == 1 and r.lease_owner is None], "retried"
    )
    assert row.next_attempt_at == started + timedelta(seconds=120)

    _moved(loop, clock, 119)
    await loop.store.looked_again()
    assert len(channel.sent) == 1  # a second early is still early
    _moved(loop, clock, 1)
    await eventually(lambda: [r for r in rows() if r.status == "sent"], "delivered at 120 s")
    assert len(channel.sent) == 2


async def test_attempts_run_out_and_the_message_fails_for_good(run_loop, clock, rows):
    channel = ScriptedChannel(lambda _: Outcome.retry("AE: down", retry_after=10.0))
    loop = await run_loop(channel, "retry: {max_attempts: 3, backoff: 1s}", ["x"])
    for attempt in (1, 2):
        await eventually(
            lambda n=attempt: [r for r in rows() if r.attempts == n and r.lease_owner is None],
            f"attempt {attempt} recorded",
        )
        _moved(loop, clock, 10)
    [row] = await eventually(lambda: [r for r in rows() if r.status == "failed"], "failed")
    assert row.attempts == 3 and "AE: down" in row.last_error
    _moved(loop, clock, 3600)
    await loop.store.looked_again()
    assert len(channel.sent) == 3  # failed for good: never sent again


async def test_a_refusal_fails_at_once_and_the_others_go_on(run_loop, clock, rows):
    def answer(envelope: Envelope) -> Outcome:
        return Outcome.rejected("AR: bad PID") if envelope.key == "bad" else Outcome.delivered()

    channel = ScriptedChannel(answer)
    await run_loop(channel, "concurrency: 2", ["ok1", "bad", "ok2"])
    done = await eventually(
        lambda: (r := rows()) and all(x.status in ("sent", "failed") for x in r) and r,
        "all settled",
    )
    assert {r.key: (r.status, r.attempts) for r in done} == {
        "ok1": ("sent", 1),
        "bad": ("failed", 1),
        "ok2": ("sent", 1),
    }
    assert sorted(channel.keys()) == ["bad", "ok1", "ok2"]


async def test_the_breaker_opens_waits_its_cooldown_on_the_clock_then_probes_once(
    run_loop, clock, rows
):
    peer_up = False

    def answer(_: Envelope) -> Outcome:
        if peer_up:
            return Outcome.delivered("AA")
        return Outcome.retry("connection refused", retry_after=0.0, transport_error=True)

    channel = ScriptedChannel(answer)
    keys = [f"m{i}" for i in range(6)]
    loop = await run_loop(
        channel,
        "concurrency: 1, batch_size: 1, breaker: {failures: 2, cooldown: 30s}",
        keys,
    )
    await eventually(lambda: loop.breaker.state is BreakerState.OPEN, "the breaker open")
    sent = len(channel.sent)
    assert sent == 2  # two failures open it; nothing more is sent while open
    _moved(loop, clock, 29)  # open, and not claiming: only time can tell nothing goes
    await stays(lambda: len(channel.sent) == sent, "nothing sent within the cooldown", 0.3)
    assert loop.breaker.state is BreakerState.OPEN

    peer_up = True
    _moved(loop, clock, 1)  # the cooldown is over: one probe, then the rest
    await eventually(lambda: all(r.status == "sent" for r in rows()), "everything delivered")
    assert loop.breaker.state is BreakerState.CLOSED
    assert sorted(set(channel.keys())) == keys
    assert all(r.attempts >= 1 for r in rows())


async def test_a_drain_gives_back_what_it_did_not_finish_and_loses_nothing(run_loop, clock, rows):
    channel = ScriptedChannel(lambda _: Outcome.delivered("AA"))
    channel.gate = asyncio.Event()  # the peer never answers
    keys = [f"d{i}" for i in range(10)]
    loop = await run_loop(channel, "concurrency: 2, lease: 60s", keys)
    await eventually(lambda: len(channel.sent) == 2, "two sends under way")
    await loop.drain(0.2)
    after = rows()
    assert {r.key for r in after} == set(keys)
    assert all(r.status == "pending" and r.lease_owner is None for r in after), [
        (r.key, r.status, r.lease_owner) for r in after
    ]
    assert all(r.attempts == 0 for r in after)  # released: not counted as attempts
    assert all(r.next_attempt_at <= clock.now() for r in after)  # due again at once


async def test_a_message_the_channel_could_not_send_waits_uncounted(run_loop, clock, rows):
    answers = iter([Outcome.held("no access token: 503 from the token endpoint", 45.0)])
    channel = ScriptedChannel(lambda _: next(answers, Outcome.delivered("201")))
    loop = await run_loop(channel, "retry: {max_attempts: 1}", ["h"])
    started = clock.now()
    [row] = await eventually(
        lambda: [r for r in rows() if r.lease_owner is None and r.last_error], "held"
    )
    assert row.status == "pending" and row.attempts == 0  # max_attempts 1, and not failed
    assert row.next_attempt_at == started + timedelta(seconds=45)
    _moved(loop, clock, 45)
    [row] = await eventually(lambda: [r for r in rows() if r.status == "sent"], "sent")
    assert row.attempts == 1


class RingDuringTheFirstClaim(CountedClaims):
    """The async store, where a message is committed (and its wake-up rung) while
    the loop's first claim is on its way back, empty: the claim ran just before."""

    loop: ChannelLoop | None = None

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        claimed = await super().claim(*args, **kwargs)
        if self.claims == 1:
            assert claimed == []
            await self._store.enqueue(NewMessage("hie", "late", b"MSH|late"))
            assert self.loop is not None
            self.loop.wake.set()  # what the doorbell's ring does
        return claimed


async def test_a_wake_up_rung_while_a_claim_is_under_way_is_not_lost(
    db_url: str, monkeypatch: pytest.MonkeyPatch
):
    # the loop's waits made far longer than the test: only the wake-up can send it
    monkeypatch.setattr(delivery, "BUSY_POLL", 3600.0)
    astore = open_async_store(DatabaseSettings(url=db_url), in_process=False)
    racing = RingDuringTheFirstClaim(astore)
    channel = ScriptedChannel(lambda _: Outcome.delivered("AA"))
    loop = ChannelLoop(
        "hie",
        _settings(""),
        channel,  # type: ignore[arg-type]
        racing,  # type: ignore[arg-type]
        DispatcherMetrics(Metrics().registry),
        "loop-test",
        notified=lambda: True,
    )
    racing.loop = loop
    loop.start()
    try:
        await eventually(lambda: channel.keys() == ["late"], "the late message sent", timeout=10)
    finally:
        await loop.drain(5)
        await astore.aclose()
