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
from daemon.store.doorbell import SOCKET_SUFFIX, Bell, folder_of, listen
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


async def test_a_bell_with_no_folder_and_no_listener_is_silent(tmp_path: Path):
    bell = Bell(str(tmp_path / "none-doorbell"))
    bell.ring(["hie"])  # no folder: nothing to ring, no error
    (tmp_path / "none-doorbell").mkdir()
    bell.ring(["hie"])
    bell.ring([])
    bell.close()


@pytest.mark.slow
async def test_an_idle_dispatcher_on_sqlite_claims_seldom_and_wakes_for_new_work(
    tmp_path: Path, sqlite_db: Path, sqlite_store: Store
):
    folder = folder_of(str(sqlite_db))
    assert folder is not None
    async with HttpSink() as sink:
        health = free_port()
        url = f"sqlite:///{sqlite_db}"
        config = write_config(
            tmp_path / "o.yaml", db_url=url, sink_port=sink.port, health_port=health
        )
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: sockets(folder), what="the dispatcher's doorbell")
            await asyncio.sleep(2.0)  # past the quick polls that follow its start
            claims = "outboxd_claim_duration_seconds_count"
            before = await proc.metric(claims, channel="hook")
            await asyncio.sleep(3.0)
            idle = await proc.metric(claims, channel="hook") - before
            # once a second at most (polling every 50 ms would be about 60); a busy
            # machine makes fewer, never more
            assert idle <= 5, f"{idle:g} claims in 3 s of idling"
            await asyncio.to_thread(
                sqlite_store.enqueue, NewMessage("hook", "k1", b'{"n": 1}', "json")
            )
            await eventually(lambda: len(sink.requests) == 1, what="the message delivered")
            assert "listening for the doorbell" in proc.output()
            assert await proc.stop() == 0
        finally:
            proc.kill()
    assert sockets(folder) == []
