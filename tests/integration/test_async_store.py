"""The store as the roles reach it (``AsyncStore``), on a thread and in a worker
process: answers, errors, cancellation; and the worker process's own life (its
death and its parent's, signals, frames), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.errors import StoreUnavailable
from daemon.domain.messages import Delivered, InvalidMessage, NewMessage
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.process import StoreProcess
from tests.support.processes import ROOT, gone

pytestmark = pytest.mark.both_loops  # uvloop is the dispatcher's default


async def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still runs")
        await asyncio.sleep(0.05)


def worker_pid(store: AsyncStore) -> int | None:
    runner = store._runner
    return runner.pid if isinstance(runner, StoreProcess) else None


@pytest.fixture(params=["thread", pytest.param("process", marks=pytest.mark.slow)])
async def astore(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[AsyncStore]:
    """The same operations, the work on a thread or in a worker process."""
    settings = DatabaseSettings(url=db_url, busy_timeout=20)
    store = open_async_store(settings, in_process=request.param == "process", process="test.0")
    yield store
    await store.aclose()


@pytest.fixture
async def runner(db_url: str) -> AsyncIterator[AsyncStore]:
    """The store in a worker process."""
    settings = DatabaseSettings(url=db_url, busy_timeout=20)
    store = open_async_store(settings, in_process=True, process="test.0")
    yield store
    await store.aclose()


async def counts(store: AsyncStore) -> dict[str, int]:
    """The channel's messages by status, read through the runner."""
    stats = await store.stats()
    return {k: v for s in stats if s.channel == "hie" for k, v in s.counts.items() if v}


def msg(key: str, payload: bytes | None = None) -> NewMessage:
    return NewMessage("hie", key, payload or f"MSH|{key}".encode(), "hl7")


def sqlite_store(tmp_path: Path, in_process: bool = True) -> AsyncStore:
    settings = DatabaseSettings(url=f"sqlite:///{tmp_path}/outbox.db", busy_timeout=30)
    migrate(open_database(settings))
    return open_async_store(settings, in_process=in_process)


# --- the contract: thread and process alike ------------------------------------------


async def test_operations_answer_in_order(astore: AsyncStore):
    results = await asyncio.gather(*(astore.enqueue(msg(f"k{i}")) for i in range(20)))
    assert [r.id for r in results] == sorted(r.id for r in results)
    assert all(r.created for r in results)
    claimed = await astore.claim(["hie"], "w", 50, 60)
    assert [m.key for m in claimed] == [f"k{i}" for i in range(20)]
    outcome = await astore.record("w", [Delivered(m.id, "AA") for m in claimed])
    assert set(outcome.recorded.values()) == {"sent"} and outcome.lost == []
    assert await counts(astore) == {"sent": 20}


async def test_errors_arrive_as_raised_and_the_store_goes_on(astore: AsyncStore):
    with pytest.raises(InvalidMessage, match="key must be a non-empty string"):
        await astore.enqueue(NewMessage("hie", "", b"MSH|"))
    assert (await astore.enqueue(msg("after"))).created


async def test_only_the_stores_own_operations(astore: AsyncStore):
    with pytest.raises(TypeError, match="not a store operation"):
        await astore._call("_write", print)
    with pytest.raises(TypeError, match="not a store operation"):
        await astore._call("no_such_operation")
    assert (await astore.enqueue(msg("fine"))).created


async def test_a_cancelled_call_still_runs_to_its_commit(astore: AsyncStore):
    await astore.enqueue(msg("a"))
    task = asyncio.ensure_future(astore.claim(["hie"], "w", 10, 60))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the claim happened all the same: nothing is left to claim
    assert await astore.claim(["hie"], "other", 10, 60) == []
    assert await counts(astore) == {"sending": 1}


async def test_calls_after_close_are_refused(astore: AsyncStore):
    assert await astore.ping()
    await astore.aclose()
    with pytest.raises(StoreUnavailable, match="closed"):
        await astore.ping()
    assert worker_pid(astore) is None


# --- the worker process --------------------------------------------------------------


async def test_the_worker_starts_with_the_first_call(runner: AsyncStore):
    assert worker_pid(runner) is None
    await runner.ping()
    assert worker_pid(runner) not in (None, os.getpid())


async def test_a_large_payload_crosses_in_pieces(runner: AsyncStore):
    payload = b"MSH|" + os.urandom(3_000_000).hex().encode()  # 6 MB: many socket reads
    await runner.enqueue(msg("big", payload))
    [claimed] = await runner.claim(["hie"], "w", 1, 60)
    assert claimed.payload == payload
    with pytest.raises(TypeError, match="cannot be passed"):
        await runner.enqueue(lambda: None)


async def test_errors_arrive_as_raised_and_the_worker_goes_on(runner: AsyncStore):
    with pytest.raises(InvalidMessage, match="key must be a non-empty string"):
        await runner.enqueue(NewMessage("hie", "", b"MSH|"))
    pid = worker_pid(runner)
    assert (await runner.enqueue(msg("after"))).created
    assert worker_pid(runner) == pid


async def test_sigterm_to_the_process_group_does_not_stop_the_worker(runner: AsyncStore):
    await runner.ping()
    pid = worker_pid(runner)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # what supervisord's stopasgroup sends
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    assert await runner.ping()
    assert worker_pid(runner) == pid


async def test_a_dead_worker_fails_the_waiting_call_and_the_next_call_starts_another(
    tmp_path: Path,
):
    runner = sqlite_store(tmp_path)
    try:
        await runner.enqueue(msg("a"))
        first = worker_pid(runner)
        assert first is not None
        blocker = sqlite3.connect(f"{tmp_path}/outbox.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the worker's claim waits for this lock
        waiting = asyncio.ensure_future(runner.claim(["hie"], "w", 10, 60))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        os.kill(first, signal.SIGKILL)
        with pytest.raises(StoreUnavailable, match="stopped before it answered"):
            await asyncio.wait_for(waiting, 10)
        blocker.execute("ROLLBACK")
        blocker.close()
        [claimed] = await runner.claim(["hie"], "w", 10, 60)  # a new worker
        assert claimed.key == "a"
        assert worker_pid(runner) not in (None, first)
    finally:
        await runner.aclose()


async def test_close_lets_the_worker_answer_what_it_was_sent_then_it_exits(tmp_path: Path):
    runner = sqlite_store(tmp_path)
    await runner.enqueue(msg("a"))
    pid = worker_pid(runner)
    assert pid is not None
    blocker = sqlite3.connect(f"{tmp_path}/outbox.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    claim = asyncio.ensure_future(runner.claim(["hie"], "w", 10, 60))
    await asyncio.sleep(0.1)
    closing = asyncio.ensure_future(runner.aclose())
    await asyncio.sleep(0.3)
    assert not closing.done()  # the worker is still inside the claim
    blocker.execute("ROLLBACK")
    blocker.close()
    await asyncio.wait_for(closing, 15)
    assert [m.key for m in claim.result()] == ["a"]
    assert gone(pid) and worker_pid(runner) is None


PARENT = """
import asyncio, sys
from daemon.config.settings import DatabaseSettings
from daemon.store.aio import open_async_store

async def main():
    store = open_async_store(DatabaseSettings(url=sys.argv[1]), in_process=True)
    await store.ping()
    print(store._runner.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_worker_exits_when_its_parent_is_killed(db_url: str):
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT, db_url,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 20)
        worker = int(line)
        assert not gone(worker)
        parent.kill()
        await parent.wait()
        await wait_gone(worker)
    finally:
        if parent.returncode is None:
            parent.kill()


class _Odd(Exception):
    def __init__(self, code: int, why: str) -> None:  # pickles, but does not unpickle
        super().__init__(f"{code}: {why}")


def test_an_error_that_cannot_cross_arrives_as_a_store_error_naming_it():
    from daemon.domain.errors import StoreError
    from daemon.store.frames import HEADER, answer

    frame = answer(5, False, _Odd(7, "odd"))
    size, seq = HEADER.unpack_from(frame)
    ok, value = pickle.loads(frame[HEADER.size :])
    assert (size, seq, ok) == (len(frame) - HEADER.size, 5, False)
    assert isinstance(value, StoreError)
    assert "could not be passed: _Odd: 7: odd" in str(value)
    frame = answer(6, True, lambda: None)
    ok, value = pickle.loads(frame[HEADER.size :])
    assert (HEADER.unpack_from(frame)[1], ok) == (6, False)
    assert "could not be passed" in str(value)


class _Unreadable:
    """Pickles here; fails to unpickle (int("not a number")) on the other side."""

    def __reduce__(self):
        return int, ("not a number",)


async def test_an_argument_the_worker_cannot_read_is_refused_and_it_goes_on(
    runner: AsyncStore,
):
    await runner.ping()
    pid = worker_pid(runner)
    with pytest.raises(TypeError, match="request could not be read"):
        await runner.enqueue(_Unreadable())
    assert await runner.ping() and worker_pid(runner) == pid


async def test_answers_in_pieces_and_an_answer_that_cannot_be_read():
    from daemon.domain.errors import StoreError
    from daemon.store.frames import HEADER, encode
    from daemon.store.process import _Answers

    loop = asyncio.get_running_loop()
    answers = _Answers()
    first, second, third = (loop.create_future() for _ in range(3))
    answers.pending.update({1: first, 2: second, 3: third})
    bad = b"not a pickle"
    stream = encode(1, (True, "one")) + HEADER.pack(len(bad), 2) + bad + encode(3, (True, 3))
    for i in range(len(stream)):  # a byte at a time
        answers.data_received(stream[i : i + 1])
    assert first.result() == "one" and third.result() == 3
    with pytest.raises(StoreError, match="store answer could not be read"):
        second.result()
    assert answers.pending == {} and answers.buffer == bytearray()


async def test_a_worker_that_cannot_start_says_so(db_url: str, monkeypatch):
    import daemon.store.process as process

    monkeypatch.setattr(process, "WORKER", "daemon.store.no_such_worker")
    runner = open_async_store(DatabaseSettings(url=db_url), in_process=True)
    try:
        with pytest.raises(StoreUnavailable, match=r"exited \(code 1\) before it was ready"):
            await runner.ping()
    finally:
        await runner.aclose()


async def test_settings_the_worker_refuses_are_raised_as_its_error(db_url: str):
    from daemon.domain.errors import StoreError

    runner = StoreProcess(DatabaseSettings(url="sqlite:///:memory:"))  # fine to describe
    try:
        with pytest.raises(StoreError, match="in-memory SQLite database cannot be shared"):
            await runner.call("ping", (), {})
        assert runner.pid is None
    finally:
        await runner.aclose()


async def test_a_worker_started_ahead_for_its_backend_serves_and_one_for_another_is_replaced(
    db_url: str,
):
    """A worker started ahead for the database's backend is taken over; one started
    for another backend (the drivers of this one hidden) refuses the database, and
    the next call starts a worker for any backend, which serves."""
    from daemon.store.address import backend_of
    from daemon.store.spawn import start_worker

    right = backend_of(db_url)
    wrong = "postgresql" if right == "sqlite" else "sqlite"
    runner = StoreProcess(DatabaseSettings(url=db_url), spawned=start_worker(right))
    try:
        await runner.call("ping", (), {})
    finally:
        await runner.aclose()
    runner = StoreProcess(DatabaseSettings(url=db_url), spawned=start_worker(wrong))
    try:
        with pytest.raises(StoreUnavailable, match=r"exited \(code 1\) before it was ready"):
            await runner.call("ping", (), {})
        await runner.call("ping", (), {})  # a worker of its own, for any backend
        assert runner.pid is not None
    finally:
        await runner.aclose()


# --- wake-ups ------------------------------------------------------------------------------


async def test_the_store_wakes_its_listener(astore: AsyncStore):
    """``listen`` rings for a channel whose messages were committed due now: on
    PostgreSQL on a connection the store opens itself (LISTEN), on SQLite with the
    doorbell's socket (the work done on a thread or in a worker process alike)."""
    assert astore.notifies
    channel = f"wake-{os.getpid()}-{time.monotonic_ns()}"  # NOTIFY reaches the database
    rung: asyncio.Queue[str] = asyncio.Queue()
    listener = asyncio.create_task(astore.listen(rung.put_nowait))
    try:
        deadline = time.monotonic() + 10
        key = 0
        while True:  # until the listener is connected: each enqueue rings again
            key += 1
            await astore.enqueue(NewMessage(channel, f"k{key}", b"x"))
            try:
                while (await asyncio.wait_for(rung.get(), 0.2)) != channel:
                    pass
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no wake-up within 10 s"
        assert not listener.done()
    finally:
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener


async def test_a_store_with_no_file_has_no_doorbell_and_its_listener_returns():
    """An in-memory SQLite database (refused by the store: nothing shares it) has
    no folder to ring in: the loops would poll, and ``listen`` returns at once."""
    store = AsyncStore(_NeverCalled(), DatabaseSettings(url="sqlite:///:memory:"))
    assert not store.notifies
    await asyncio.wait_for(store.listen(lambda channel: None), 1.0)


class _NeverCalled:
    async def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise AssertionError(f"{name} called")

    async def aclose(self) -> None:
        pass
