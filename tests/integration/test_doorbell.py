"""SQLite's doorbell (``daemon.store.doorbell``): a store that commits messages due
now wakes the dispatchers listening, across processes, over real Unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.sim.http import HttpSink
from daemon.store import doorbell
from daemon.store.db import open_database
from daemon.store.doorbell import SOCKET_SUFFIX, Bell, folder_of, listen, listener_folder
from daemon.store.sync import Store
from tests.integration.test_dispatcher import write_config
from tests.support.ports import free_port
from tests.support.processes import ROOT, DaemonProcess
from tests.support.waiting import eventually

HEARD = 10.0  # seconds a datagram may take to arrive before the test gives up
QUIET = 0.3  # seconds in which a datagram that must not come would have come


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "outbox.db"
    shutil.copy(sqlite_template, path)
    return path


@pytest.fixture
def sqlite_store(sqlite_db: Path) -> Iterator[Store]:
    store = Store(open_database(DatabaseSettings(url=f"sqlite:///{sqlite_db}")))
    yield store
    store.close()


def sockets(folder: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.endswith(SOCKET_SUFFIX))
    except FileNotFoundError:
        return []


@contextlib.asynccontextmanager
async def listening(folder: str) -> AsyncIterator[asyncio.Queue[str]]:
    """A listener on ``folder``, bound by the time the block runs: what it hears."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    before = set(sockets(folder))
    task = asyncio.create_task(listen(folder, heard.put_nowait))
    try:
        await eventually(lambda: set(sockets(folder)) - before, what="the listener's socket")
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def nothing_more(heard: asyncio.Queue[str]) -> None:
    with pytest.raises(TimeoutError):
        got = await asyncio.wait_for(heard.get(), QUIET)
        pytest.fail(f"rung for {got!r}")


def new(key: str, channel: str = "hie", not_before: datetime | None = None) -> NewMessage:
    return NewMessage(channel, key, b"MSH|^~\\&|A", "hl7", not_before=not_before)


async def test_an_enqueue_in_another_process_rings_the_listener(sqlite_db: Path, tmp_path: Path):
    folder = folder_of(str(sqlite_db))
    assert folder == str(sqlite_db.resolve()) + "-doorbell"
    config = tmp_path / "o.yaml"
    config.write_text(
        f"database: sqlite:///{sqlite_db}\n"
        "channels:\n  hie: {kind: mllp, host: 127.0.0.1, port: 1}\n"
    )
    payload = tmp_path / "m.hl7"
    payload.write_text("MSH|^~\\&|A|B|C|D|20261206||ADT^A04|M1|P|2.5.1\r")
    async with listening(folder) as heard:
        assert oct(os.stat(folder).st_mode & 0o777) == "0o700"  # the database's owner alone
        command = [sys.executable, "-m", "daemon", "enqueue", "-c", str(config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = await asyncio.to_thread(
            subprocess.run,
            [*command, "--channel", "hie", "--key", "k1", str(payload)],
            capture_output=True, text=True, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert await asyncio.wait_for(heard.get(), HEARD) == "hie"
    assert sockets(folder) == []  # a listener that stops takes its socket away


async def test_only_a_committed_write_of_messages_due_now_rings(sqlite_store: Store, sqlite_db):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    unit = sqlite_store.unit
    async with listening(folder) as heard:

        def rolled_back() -> None:
            unit.notify(["lost"])
            raise RuntimeError("the work failed")

        with pytest.raises(RuntimeError):
            await asyncio.to_thread(unit.write, rolled_back)
        later = datetime.now(UTC) + timedelta(days=1)
        await asyncio.to_thread(sqlite_store.enqueue, new("k1", "later", not_before=later))
        await nothing_more(heard)  # neither the rolled back write nor a message not yet due
        await asyncio.to_thread(sqlite_store.enqueue_many, [new("k2"), new("k3", "bpjs")])
        got = {await asyncio.wait_for(heard.get(), HEARD) for _ in range(2)}
        assert got == {"hie", "bpjs"}  # one datagram, both channels
        await asyncio.to_thread(sqlite_store.enqueue, new("k2"))  # a duplicate: nothing new
        await nothing_more(heard)
        earlier = datetime.now(UTC) - timedelta(minutes=1)  # due already: rung
        await asyncio.to_thread(sqlite_store.enqueue, new("k4", "late", not_before=earlier))
        assert await asyncio.wait_for(heard.get(), HEARD) == "late"


async def test_a_nested_write_rings_once_the_outer_one_has_committed(
    sqlite_store: Store, sqlite_db: Path
):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    unit = sqlite_store.unit
    async with listening(folder) as heard:
        inner_done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def outer() -> None:
            unit.write(lambda: unit.notify(["inner"]))
            loop.call_soon_threadsafe(inner_done.set)
            # the inner write is done, the transaction is not: nothing rung yet
            asyncio.run_coroutine_threadsafe(nothing_more(heard), loop).result()
            unit.notify(["outer"])

        await asyncio.to_thread(unit.write, outer)
        assert inner_done.is_set()
        got = {await asyncio.wait_for(heard.get(), HEARD) for _ in range(2)}
        assert got == {"inner", "outer"}
        await nothing_more(heard)

        def outer_fails() -> None:
            unit.write(lambda: unit.notify(["inner"]))
            raise RuntimeError("the outer work failed")

        with pytest.raises(RuntimeError):
            await asyncio.to_thread(unit.write, outer_fails)
        await nothing_more(heard)  # all of it rolled back: nothing rung


async def test_every_listener_is_rung_and_a_dead_ones_socket_removed(sqlite_db: Path):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    async with listening(folder) as first, listening(folder) as second:
        # a listener killed before it could remove its socket
        name = f"99999-deadbeef{SOCKET_SUFFIX}"
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(doorbell._address(folder, fd, name))  # the folder's path may be long
        os.close(fd)
        dead = os.path.join(folder, name)
        assert len(sockets(folder)) == 3
        Bell(folder).ring(["hie"])
        assert await asyncio.wait_for(first.get(), HEARD) == "hie"
        assert await asyncio.wait_for(second.get(), HEARD) == "hie"
        assert not os.path.exists(dead)
        assert len(sockets(folder)) == 2


async def test_a_folder_too_long_for_a_socket_path_is_reached_by_its_descriptor(
    tmp_path: Path, sqlite_template: Path
):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "outbox.db"
    shutil.copy(sqlite_template, path)
    folder = folder_of(str(path))
    assert folder is not None and len(folder) > 108  # longer than any socket address
    store = Store(open_database(DatabaseSettings(url=f"sqlite:///{path}")))
    try:
        async with listening(folder) as heard:
            await asyncio.to_thread(store.enqueue, new("k1"))
            assert await asyncio.wait_for(heard.get(), HEARD) == "hie"
    finally:
        store.close()


async def test_a_listener_whose_socket_was_removed_listens_again(
    sqlite_db: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(doorbell, "CHECK_EVERY", 0.05)
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    async with listening(folder) as heard:
        shutil.rmtree(folder)  # an operator's clean-up, say
        await eventually(lambda: sockets(folder), what="a socket bound again")
        Bell(folder).ring(["hie"])
        assert await asyncio.wait_for(heard.get(), HEARD) == "hie"


async def test_a_folder_others_may_write_in_is_neither_listened_in_nor_rung(
    sqlite_db: Path, caplog: pytest.LogCaptureFixture
):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    os.mkdir(folder)
    os.chmod(folder, 0o777)  # anyone could plant a socket here
    name = f"1-planted0{SOCKET_SUFFIX}"
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    planted = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    planted.bind(doorbell._address(folder, fd, name))
    os.close(fd)
    planted.setblocking(False)
    try:
        Bell(folder).ring(["hie"])
        with pytest.raises(BlockingIOError):  # it heard nothing
            planted.recv(100)
        task = asyncio.create_task(listen(folder, lambda channel: None))
        try:

            def refused() -> bool:
                errors = [getattr(r, "error", "") for r in caplog.records]
                return any("writable by others" in e for e in errors)

            await eventually(refused, what="the listener's refusal")
            assert sockets(folder) == [name]  # the listener bound nothing there
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        planted.close()


async def test_a_folder_that_is_a_symbolic_link_is_neither_listened_in_nor_rung(
    sqlite_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, folder)
    task = asyncio.create_task(listen(folder, lambda channel: None))
    try:
        await eventually(
            lambda: any(r.getMessage().startswith("doorbell unavailable") for r in caplog.records),
            what="the listener's refusal",
        )
        assert list(elsewhere.iterdir()) == []  # nothing bound where the link points
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_listener_that_is_never_read_does_not_hold_the_writer_up(sqlite_db: Path):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    # a dispatcher too busy to read: its queue fills, and the rings go on without it
    # (a blocking send would hang here), its socket kept (it is not a dead one's)
    sock, path = doorbell._bind(folder)
    try:
        bell = Bell(folder)
        for n in range(5000):
            bell.ring([f"c{n}"])
        bell.close()
        assert os.path.exists(path)
        assert sock.recv(100) == b"c0"  # the first, kept; the later ones dropped
    finally:
        sock.close()


async def test_the_listener_says_when_it_listens(sqlite_db: Path):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    states: list[bool] = []
    task = asyncio.create_task(listen(folder, lambda channel: None, states.append))
    await eventually(lambda: states == [True], what="listening")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert states == [True, False]


def test_a_process_of_another_account_than_the_databases_owner_does_not_listen(tmp_path: Path):
    if os.geteuid() == 0:
        path = tmp_path / "theirs.db"
        path.write_bytes(b"")
        os.chown(path, 65534, 65534)  # nobody's
        theirs = str(path)
    else:
        theirs = "/etc/passwd"  # root's
    assert folder_of(theirs) is not None  # its writers may still ring (root can)
    assert listener_folder(theirs) is None
    mine = tmp_path / "mine.db"
    mine.write_bytes(b"")
    assert listener_folder(str(mine)) == folder_of(str(mine))


async def test_a_bell_with_no_folder_and_no_listener_is_silent(tmp_path: Path):
    bell = Bell(str(tmp_path / "none-doorbell"))
    bell.ring(["hie"])  # no folder: nothing to ring, no error
    (tmp_path / "none-doorbell").mkdir()
    bell.ring(["hie"])
    bell.ring([])
    bell.close()


CLAIMS = "outboxd_claim_duration_seconds_count"
IDLE = 3.0  # seconds of idling counted


@contextlib.asynccontextmanager
async def dispatcher(
    tmp_path: Path, sqlite_db: Path
) -> AsyncIterator[tuple[DaemonProcess, HttpSink]]:
    """A dispatcher process on ``sqlite_db``, one channel ``hook`` to an HTTP sink;
    stopped (exit 0) after the block."""
    async with HttpSink() as sink:
        health = free_port()
        url = f"sqlite:///{sqlite_db}"
        config = write_config(
            tmp_path / "o.yaml", db_url=url, sink_port=sink.port, health_port=health
        )
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            yield proc, sink
            assert await proc.stop() == 0
        finally:
            proc.kill()


async def idle_claims(proc: DaemonProcess) -> float:
    """The claims ``proc`` makes on ``hook`` in ``IDLE`` seconds of idling."""
    await asyncio.sleep(2.0)  # past the quick polls that follow its start
    before = await proc.metric(CLAIMS, channel="hook")
    await asyncio.sleep(IDLE)
    return await proc.metric(CLAIMS, channel="hook") - before


@pytest.mark.slow
async def test_an_idle_dispatcher_on_sqlite_claims_seldom_and_wakes_for_new_work(
    tmp_path: Path, sqlite_db: Path, sqlite_store: Store
):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    async with dispatcher(tmp_path, sqlite_db) as (proc, sink):
        await eventually(lambda: sockets(folder), what="the dispatcher's doorbell")
        idle = await idle_claims(proc)
        # once a second at most (polling every 50 ms would be about 60); a busy
        # machine makes fewer, never more
        assert idle <= 5, f"{idle:g} claims in {IDLE:g} s of idling"
        message = NewMessage("hook", "k1", b'{"n": 1}', "json")
        await asyncio.to_thread(sqlite_store.enqueue, message)
        await eventually(lambda: len(sink.requests) == 1, what="the message delivered")
        assert "listening for the doorbell" in proc.output()
        assert await proc.metric("outboxd_wakeups_listening") == 1
        # woken by the enqueue's ring (its poll alone would have delivered it too)
        assert await proc.metric("outboxd_wakeups_total", channel="hook") >= 1
    assert sockets(folder) == []


@pytest.mark.slow
async def test_a_dispatcher_whose_doorbell_is_refused_says_why_and_polls_often(
    tmp_path: Path, sqlite_db: Path, sqlite_store: Store
):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    os.mkdir(folder)
    os.chmod(folder, 0o777)  # not fit: the dispatcher must not listen there
    async with dispatcher(tmp_path, sqlite_db) as (proc, sink):
        await eventually(
            lambda: "writable by others" in proc.output(), what="the refusal in the log"
        )
        idle = await idle_claims(proc)
        # every 50 ms at most (about 60), not once a second (at most 4)
        assert idle >= 8, f"{idle:g} claims in {IDLE:g} s of idling"
        assert await proc.metric("outboxd_wakeups_listening") == 0
        message = NewMessage("hook", "k1", b'{"n": 1}', "json")
        await asyncio.to_thread(sqlite_store.enqueue, message)
        await eventually(lambda: len(sink.requests) == 1, what="the message delivered")
    assert sockets(folder) == []
