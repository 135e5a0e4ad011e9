"""A channel's rate-limit tokens: a delivery loop takes as many as its waiting
workers need in one transaction, and the budget holds however many takers (one
per dispatcher process) share the channel's bucket."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from daemon.channels.base import Envelope, Outcome
from daemon.config.database import DatabaseSettings
from daemon.config.loader import parse_config
from daemon.domain.messages import NewMessage
from daemon.resilience.ratelimit import Bucket
from daemon.roles.delivery import ChannelLoop
from daemon.runtime.metrics import DispatcherMetrics, Metrics
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.db import open_database
from daemon.store.sync import Store

pytestmark = pytest.mark.timeout(120)


def test_concurrent_takers_never_exceed_the_budget(db_url: str):
    """Four takers, each on a connection of its own as a dispatcher process has,
    ask for 1 to 6 tokens at a time for two seconds: together they are granted
    no more than the bucket's burst and its rate over the time they took, and
    they do use the budget."""
    bucket = Bucket(rate=50.0, capacity=5.0)
    takers = 4
    stores = [
        Store(open_database(DatabaseSettings(url=db_url, busy_timeout=20))) for _ in range(takers)
    ]
    granted = [0] * takers
    calls = [0] * takers
    errors: list[BaseException] = []
    go = threading.Barrier(takers + 1)
    until: list[float] = []

    def take(i: int) -> None:
        rng = random.Random(i)
        try:
            go.wait(timeout=10)
            while time.monotonic() < until[0]:
                n, wait = stores[i].take_tokens("budget", rng.randint(1, 6), bucket)
                granted[i] += n
                calls[i] += 1
                if not n:
                    time.sleep(min(wait, 0.05))  # what the store said, as a loop waits
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(takers)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    until.append(began + 2.0)
    go.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - began
    for store in stores:
        store.close()
    assert not errors, errors
    total = sum(granted)
    assert total <= bucket.capacity + bucket.rate * elapsed + 1e-6, (total, elapsed)
    assert total >= bucket.rate * 2.0 * 0.5, (total, calls)  # the budget was used
    assert all(calls), calls  # every taker got its turns


def test_a_batch_take_is_one_transaction(store: Store, monkeypatch: pytest.MonkeyPatch):
    writes: list[str] = []
    write = store.unit.write

    def counted(work: Any) -> Any:
        writes.append("write")
        return write(work)

    monkeypatch.setattr(store.unit, "write", counted)
    now = datetime.now(UTC)  # both takes at one instant: nothing refills between them
    assert store.take_tokens("batch", 8, Bucket(rate=10.0, capacity=10.0), now=now) == (8, 0.0)
    assert writes == ["write"]
    granted, wait = store.take_tokens("batch", 8, Bucket(rate=10.0, capacity=10.0), now=now)
    assert granted == 2 and wait == 0.0  # what was left; the rest is asked for again
    assert writes == ["write", "write"]


# --- a delivery loop ------------------------------------------------------------------------


class Instant:
    """A channel whose peer answers every message at once."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def sender(self) -> Instant:
        return self

    async def send(self, envelope: Envelope) -> Outcome:
        await asyncio.sleep(0)
        self.sent.append(envelope.id)
        return Outcome.delivered("ok")

    async def close(self) -> None:
        return None


class CountingStore:
    """The store as a loop sees it, counting the token takes (one transaction each)."""

    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self.takes: list[tuple[int, int]] = []  # (wanted, granted)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def take_tokens(self, channel: str, wanted: int, bucket: Bucket) -> tuple[int, float]:
        granted, wait = await self._store.take_tokens(channel, wanted, bucket)
        self.takes.append((wanted, granted))
        return granted, wait


async def test_a_loop_takes_the_tokens_its_waiting_workers_need_in_one_transaction(db_url: str):
    settings = parse_config(
        "database: sqlite:///unused.db\nchannels:\n"
        "  hie: {kind: mllp, host: 127.0.0.1, port: 9, rate: 400/s, burst: 8,"
        " concurrency: 8, batch_size: 50}\n"
    )
    astore = open_async_store(DatabaseSettings(url=db_url), in_process=False)
    counting = CountingStore(astore)
    channel = Instant()
    count = 120
    await astore.enqueue_many([NewMessage("hie", f"k{i}", b"x") for i in range(count)])
    loop = ChannelLoop(
        "hie",
        settings.channels["hie"],
        channel,
        counting,
        DispatcherMetrics(Metrics().registry),
        "tokens-test",  # type: ignore[arg-type]
    )
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while len(channel.sent) < count:
            assert time.monotonic() < deadline, f"{len(channel.sent)} of {count} sent"
            await asyncio.sleep(0.01)
    finally:
        await loop.drain(5)
        await astore.aclose()
    assert sorted(channel.sent) == sorted(set(channel.sent))
    granted = sum(g for _, g in counting.takes)
    assert granted == count  # a token per send, none taken for nothing
    assert max(w for w, _ in counting.takes) > 1  # several waiting workers, one request
    assert sum(1 for _, g in counting.takes if g) < count  # fewer transactions than sends
