"""The dispatcher as a real process: delivery, retries, drain, reload, health."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from daemon.domain.messages import NewMessage
from daemon.sim.http import Faults, HttpSink
from daemon.store.models import Message
from daemon.store.sync import Store
from tests.support.ports import free_port
from tests.support.processes import ROOT, DaemonProcess, gone
from tests.support.waiting import eventually, stays

pytestmark = pytest.mark.slow

QUIET = 0.5  # seconds in which what must not happen (another attempt) would have

CONFIG = """
database: {db_url}
channels:
  hook:
    kind: http
    url: http://127.0.0.1:{sink_port}/hook
    concurrency: {concurrency}
    lease: 10s
    retry: {{max_attempts: 3, backoff: 0.2s, max_backoff: 0.5s}}
    breaker: {{failures: 3, cooldown: {cooldown}}}
roles:
  dispatcher: {{base_port: {health_port}, drain_timeout: {drain}}}
control: {{port: {control_port}}}
"""


def write_config(path: Path, **values: object) -> Path:
    defaults: dict[str, object] = {
        "concurrency": 4, "drain": "10s", "control_port": free_port(), "cooldown": "60s",
    }  # fmt: skip
    path.write_text(CONFIG.format(**{**defaults, **values}))
    return path


def statuses(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in Message.select(Message.status):
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def enqueue(store: Store, count: int, prefix: str = "m") -> list[int]:
    messages = [
        NewMessage("hook", f"{prefix}{i}", f'{{"n": {i}}}'.encode(), "json") for i in range(count)
    ]
    return [r.id for r in store.enqueue_many(messages)]


async def test_delivers_everything_then_exits_zero_on_sigterm(tmp_path, db_url, store):
    async with HttpSink() as sink:
        health = free_port()
        config = write_config(
            tmp_path / "o.yaml", db_url=db_url, sink_port=sink.port, health_port=health
        )
        enqueue(store, 40)
        # exec'd, as supervisord starts it: its store worker exec'd too (a forked
        # dispatcher forks its worker)
        proc = DaemonProcess(tmp_path, config, forked=False)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {"sent": 40}, what="40 sent")
            keys = [r.headers["Idempotency-Key"] for r in sink.requests]
            assert sorted(keys) == sorted(f"m{i}" for i in range(40))
            status, body = await proc.health()
            assert status == 200 and body["status"] == "ok"
            delivered = await proc.metric(
                "outboxd_deliveries_total", channel="hook", result="delivered"
            )
            assert delivered == 40
            # every claim is timed, the empty ones too: at least the one that took the 40
            claims = await proc.metric("outboxd_claim_duration_seconds_count", channel="hook")
            assert claims >= 1
            [worker] = proc.children()  # the store's worker process
            assert "daemon.store.worker" in Path(f"/proc/{worker}/cmdline").read_text()
            # idle, then new work is picked up again
            enqueue(store, 5, prefix="late")
            await eventually(lambda: statuses(store) == {"sent": 45}, what="45 sent")
            assert await proc.stop() == 0
        finally:
            proc.kill()
        assert "stopped" in proc.output()
        assert "loop=uvloop" in proc.output()  # roles.dispatcher.event_loop's default
        assert "store=process" in proc.output()  # roles.dispatcher.store_process's default
        assert gone(worker)  # the worker stops with its dispatcher


async def test_the_standard_event_loop_and_a_store_thread_when_configured(tmp_path, db_url, store):
    async with HttpSink() as sink:
        health = free_port()
        config = write_config(
            tmp_path / "o.yaml", db_url=db_url, sink_port=sink.port, health_port=health
        )
        config.write_text(
            config.read_text().replace(
                "drain_timeout: 10s}",
                "drain_timeout: 10s, event_loop: asyncio, store_process: false}",
            )
        )
        enqueue(store, 5)
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {"sent": 5}, what="5 sent")
            assert proc.children() == []
            assert await proc.stop() == 0
        finally:
            proc.kill()
        assert "loop=asyncio" in proc.output() and "loop=uvloop" not in proc.output()
        assert "store=thread" in proc.output()


async def test_retries_with_backoff_then_fails_when_attempts_run_out(tmp_path, db_url, store):
    async with HttpSink(Faults(status=503, headers={"Retry-After": "0"})) as sink:
        health = free_port()
        config = write_config(
            tmp_path / "o.yaml", db_url=db_url, sink_port=sink.port, health_port=health
        )
        [message_id] = enqueue(store, 1)
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {"failed": 1}, what="failed")
            row = Message.get_by_id(message_id)
            assert row.attempts == 3
            assert "HTTP 503" in row.last_error and "gave up after 3 attempt(s)" in row.last_error
            assert len(sink.requests) == 3
            assert {r.headers["Idempotency-Key"] for r in sink.requests} == {"m0"}
            assert (
                await proc.metric("outboxd_deliveries_total", channel="hook", result="retried") == 2
            )
            assert (
                await proc.metric("outboxd_deliveries_total", channel="hook", result="failed") == 1
            )
        finally:
            assert await proc.stop() == 0


async def test_rejected_message_fails_with_the_peer_answer(tmp_path, db_url, store):
    async with HttpSink(Faults(status=422, body=b'{"error": "bad visit"}')) as sink:
        health = free_port()
        config = write_config(
            tmp_path / "o.yaml", db_url=db_url, sink_port=sink.port, health_port=health
        )
        [message_id] = enqueue(store, 1)
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {"failed": 1}, what="failed")
            row = Message.get_by_id(message_id)
            assert row.attempts == 1 and "bad visit" in row.response
            assert len(sink.requests) == 1
        finally:
            assert await proc.stop() == 0


async def test_drain_finishes_in_flight_and_releases_the_rest(tmp_path, db_url, store):
    async with HttpSink(Faults(delay=1.5)) as sink:
        health = free_port()
        config = write_config(
            tmp_path / "o.yaml",
            db_url=db_url,
            sink_port=sink.port,
            health_port=health,
            concurrency=2,
            drain="1h",  # a drain that waited out its deadline would outlast stop()'s wait
        )
        enqueue(store, 10)
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: len(sink.requests) == 2, what="two sends in flight")
            [worker] = proc.children()
            # as supervisord stops it; it ends once the two sends are answered
            assert await proc.stop(group=True) == 0
            assert gone(worker)
        finally:
            proc.kill()
        counts = await asyncio.to_thread(statuses, store)
        assert counts == {"sent": 2, "pending": 8}, proc.output()
        leased = Message.select().where(Message.lease_owner.is_null(False)).count()
        assert leased == 0
        assert {r.attempts for r in Message.select().where(Message.status == "pending")} == {0}


async def test_drain_deadline_releases_sends_still_in_flight(tmp_path, db_url, store):
    # the sink never answers within the test, and the channel's own timeout (30 s)
    # would count an attempt: only the drain deadline (1 s) ends the sends as released
    async with HttpSink(Faults(delay=3600)) as sink:
        health = free_port()
        config = write_config(
            tmp_path / "o.yaml", db_url=db_url, sink_port=sink.port, health_port=health, drain="1s"
        )
        enqueue(store, 3)
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: len(sink.requests) == 3, what="three sends in flight")
            assert await proc.stop() == 0
        finally:
            proc.kill()
    assert await asyncio.to_thread(statuses, store) == {"pending": 3}
    # released by the deadline: no attempt counted, no error recorded
    assert {(r.attempts, r.last_error) for r in Message.select()} == {(0, None)}


async def test_unreachable_peer_opens_the_breaker_and_health_says_so(tmp_path, db_url, store):
    health = free_port()
    config = write_config(
        tmp_path / "o.yaml", db_url=db_url, sink_port=free_port(), health_port=health
    )
    enqueue(store, 10)
    proc = DaemonProcess(tmp_path, config)
    try:
        await proc.start(health)

        async def breaker_open() -> bool:
            return await proc.metric("outboxd_circuit_breaker_state", channel="hook") == 2

        await eventually(breaker_open, "the breaker open", timeout=20, dump=proc.output)
        status, body = await proc.health()
        assert status == 503
        assert any("circuit breaker open" in p for p in body["problems"])
        # the breaker stopped the attempts: nothing failed, nothing is held (the
        # sends under way when it opened are answered and released)
        await eventually(
            lambda: statuses(store).get("sending", 0) == 0, "nothing held", dump=proc.output
        )
        assert statuses(store).get("failed", 0) == 0
        attempts = sum(r.attempts for r in Message.select())
        # three failures open it; sends already started by the other workers may fail too
        assert 3 <= attempts <= 3 + 4 - 1
        await stays(
            lambda: sum(r.attempts for r in Message.select()) == attempts,
            "no attempt while the breaker is open", QUIET, dump=proc.output,
        )  # fmt: skip
    finally:
        assert await proc.stop() == 0


async def test_an_open_breaker_with_nothing_left_to_send_is_half_open_after_its_cooldown(
    tmp_path, db_url, store
):
    """A channel whose partner went away and whose messages then ended (cancelled
    here, or failed by their probes) has nothing to probe with: past the cool-down the breaker is
    half-open and the process ready, not open and unready for good."""
    health = free_port()
    config = write_config(
        tmp_path / "o.yaml", db_url=db_url, sink_port=free_port(), health_port=health,
        cooldown="1s",
    )  # fmt: skip
    enqueue(store, 5)
    proc = DaemonProcess(tmp_path, config)
    try:
        await proc.start(health)

        async def breaker(state: int) -> bool:
            return await proc.metric("outboxd_circuit_breaker_state", channel="hook") == state

        await eventually(lambda: breaker(2), "the breaker open", timeout=20, dump=proc.output)

        def nothing_to_send() -> bool:  # a probe may hold one: cancel what comes back
            Message.update(status="cancelled").where(Message.status == "pending").execute()
            return statuses(store).keys() <= {"cancelled", "failed"}

        await eventually(nothing_to_send, "nothing left to send", dump=proc.output)

        async def ready() -> bool:
            status, _ = await proc.health()
            return status == 200

        await eventually(ready, "the process ready again", timeout=30, dump=proc.output)
        assert await breaker(1)  # half-open: the next message is the probe
    finally:
        assert await proc.stop() == 0


async def test_reload_keeps_running_on_a_bad_file_and_applies_a_good_one(tmp_path, db_url, store):
    async with HttpSink() as first, HttpSink() as second:
        health = free_port()
        config = write_config(
            tmp_path / "o.yaml", db_url=db_url, sink_port=first.port, health_port=health
        )
        good = config.read_text()
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            config.write_text(good + "bogus_key: 1\n")
            proc.signal(signal.SIGHUP)
            await eventually(lambda: "reload refused" in proc.output(), what="reload refused")
            assert "bogus_key: unknown key" in proc.output()
            enqueue(store, 3, prefix="a")
            await eventually(lambda: len(first.requests) == 3, what="sent to the first sink")
            config.write_text(good.replace(f":{first.port}/", f":{second.port}/"))
            proc.signal(signal.SIGHUP)
            change = (
                f"channel hook changed: url http://127.0.0.1:{first.port}/… → "
                f"http://127.0.0.1:{second.port}/…"
            )
            await eventually(lambda: change in proc.output(), what="channel hook changed")
            enqueue(store, 2, prefix="b")
            await eventually(lambda: len(second.requests) == 2, what="sent to the second sink")
            assert len(first.requests) == 3
        finally:
            assert await proc.stop() == 0


async def test_bad_config_at_start_exits_78(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("database: sqlite:///x.db\nchannels: {hook: {kind: http}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "run",
        "dispatcher",
        "-c",
        str(config),
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _, err = await proc.communicate()
    assert proc.returncode == 78
    assert b"channels.hook.url: required key is missing" in err


async def test_waits_for_a_database_that_does_not_answer_yet(tmp_path):
    config = write_config(
        tmp_path / "o.yaml",
        db_url="postgresql://postgres@127.0.0.1:1/none?connect_timeout=1",
        sink_port=free_port(),
        health_port=free_port(),
    )
    log = tmp_path / "d.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", "dispatcher", "-c", str(config),
            cwd=tmp_path, stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        try:
            await eventually(lambda: "waiting for the database" in log.read_text(), what="waiting")
            assert proc.returncode is None
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()


async def test_a_health_port_in_use_is_a_clear_error(tmp_path, db_url):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(
            tmp_path / "o.yaml", db_url=db_url, sink_port=free_port(), health_port=port
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", "dispatcher", "-c", str(config),
            cwd=tmp_path, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 69
    assert f"cannot serve /healthz on 127.0.0.1:{port}" in err.decode()
