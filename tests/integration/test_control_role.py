"""``outboxd run control`` as a real process on SQLite: the API and the page on
control.port beside /healthz on roles.control.base_port; a port in use is exit 69
with the port named; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from daemon.config.database import DatabaseSettings
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from tests.support.ports import free_port
from tests.support.processes import ROOT, DaemonProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # the control role as a process

CONFIG = """
database: sqlite:///{db}
channels:
  hook: {{kind: http, url: "http://127.0.0.1:9/hook"}}
roles:
  control: {{base_port: {health}}}
control: {{port: {api}}}
"""


def _workdir(tmp_path: Path) -> tuple[Path, int, int]:
    db = tmp_path / "outbox.db"
    database = open_database(DatabaseSettings(url=f"sqlite:///{db}"))
    migrate(database)
    database.close()
    health, api = free_port(), free_port()
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(db=db, health=health, api=api))
    return tmp_path / "outboxd.yaml", health, api


async def test_the_control_role_serves_the_api_and_the_page(tmp_path: Path):
    config, health, api = _workdir(tmp_path)
    process = DaemonProcess(tmp_path, config, role="control")
    await process.start(health)
    try:
        status, body = await process.health()
        assert status == 200 and body["role"] == "control"
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{api}"
            async with session.get(base + "/api/v1/stats") as response:  # loopback, no tokens
                assert response.status == 200
                assert [c["channel"] for c in (await response.json())["channels"]] == ["hook"]
            async with session.get(base + "/") as response:
                assert response.status == 200 and response.content_type == "text/html"
                csp = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "default-src 'none'" in csp
                assert '<script src="/page/admin.js"' in await response.text()
            async with session.get(base + "/page/admin.js") as response:
                assert response.status == 200 and "sessionStorage" in await response.text()
            async with session.get(base + "/page/../outboxd.yaml") as response:
                assert response.status == 404
        await _enqueue_two(tmp_path)
        _, metrics = await process.get("/metrics")
        assert 'outboxd_queue_messages{channel="hook",status="pending"} 2.0' in metrics
        assert 'outboxd_queue_messages{channel="hook",status="failed"} 0.0' in metrics
        ages = [line for line in metrics.splitlines()
                if line.startswith("outboxd_queue_oldest_pending_age_seconds{")]  # fmt: skip
        assert len(ages) == 1 and float(ages[0].rsplit(" ", 1)[1]) >= 0
    finally:
        assert await process.stop() == 0
    assert "control API" in process.output()


async def test_the_api_answers_as_soon_as_healthz_says_ready(tmp_path: Path):
    """What `outboxd status --wait` and a supervisor's health check rely on: the first
    200 of /healthz comes once the API is served (before that: "starting")."""
    config, health, api = _workdir(tmp_path)
    process = DaemonProcess(tmp_path, config, role="control")
    await process.start(health, wait=False)
    seen: list[str] = []

    async def ready() -> bool:
        try:
            status, body = await process.health()
        except (aiohttp.ClientError, TimeoutError):
            return False  # not listening yet
        seen.append(body["status"])
        return status == 200

    try:
        await eventually(ready, "/healthz to say ready", timeout=60, dump=process.output)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"http://127.0.0.1:{api}/api/v1/stats") as response,
        ):
            assert response.status == 200
        assert set(seen) <= {"starting", "ok"}, seen
    finally:
        assert await process.stop() == 0


async def _enqueue_two(workdir: Path) -> None:
    for key in ("a", "b"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "enqueue", "--channel", "hook", "--key", key,
            "-c", "outboxd.yaml", "-", cwd=workdir, stdin=asyncio.subprocess.PIPE,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        await proc.communicate(b'{"n": 1}')
        assert proc.returncode == 0


@pytest.mark.parametrize("database", ["sqlite", "away"])
async def test_a_control_port_in_use_is_exit_69_naming_it(tmp_path: Path, database: str):
    """The API's port is bound at start, with the health port: with the database
    away too (a PostgreSQL port nobody listens on) the process does not wait for
    it before it says its port is taken and ends."""
    config, _, api = _workdir(tmp_path)
    if database == "away":
        away = f"postgresql://outboxd@127.0.0.1:{free_port()}/x"
        config.write_text(config.read_text().replace(f"sqlite:///{tmp_path}/outbox.db", away))
        assert away in config.read_text()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", api))
        taken.listen()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", "control", "-c", str(config),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 69, err.decode()
    assert f"cannot serve the control API on 127.0.0.1:{api}" in err.decode()
    assert "(control.port + process number 0)" in err.decode()
    assert "Traceback" not in err.decode()
    assert "database" not in err.decode().lower(), err.decode()  # never got as far


async def test_a_filter_over_the_bound_is_a_bulk_operation_the_role_carries_to_the_end(
    tmp_path: Path,
):
    from daemon.domain.messages import Failed, NewMessage
    from daemon.store.operator import BULK_BOUND
    from daemon.store.sync import Store

    config, health, api = _workdir(tmp_path)
    count = BULK_BOUND + 50
    store = Store(open_database(DatabaseSettings(url=f"sqlite:///{tmp_path / 'outbox.db'}")))
    try:
        for start in range(0, count, 1000):
            keys = range(start, min(start + 1000, count))
            store.enqueue_many([NewMessage("hook", f"k{i}", b"{}") for i in keys], actor="test")
            claimed = store.claim(["hook"], "w", 1000, 60)
            store.record("w", [Failed(c.id, "partner down") for c in claimed])
    finally:
        store.close()
    process = DaemonProcess(tmp_path, config, role="control")
    await process.start(health)
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{api}"
            body = {"filter": {"channel": "hook", "status": ["failed"]}}
            async with session.post(base + "/api/v1/messages/retry", json=body) as response:
                assert response.status == 202, await response.text()
                started = await response.json()
                location = response.headers["Location"]
            assert started["matched"] == count and started["changed"] == []
            assert location == f"/api/v1/operations/{started['operation']}"
            for _ in range(300):
                async with session.get(base + location) as response:
                    operation = await response.json()
                if operation["state"] != "running":
                    break
                await asyncio.sleep(0.1)
            assert operation["state"] == "finished" and operation["done"] == count, operation
            async with session.get(base + "/api/v1/stats") as response:
                [hook] = (await response.json())["channels"]
            assert hook["counts"]["pending"] == count and hook["counts"]["failed"] == 0
    finally:
        assert await process.stop() == 0
    assert "operation finished" in process.output()


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Pipe one connection to PostgreSQL on 127.0.0.1:5432, both ways."""
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.postgres
async def test_while_the_database_is_away_healthz_and_the_api_answer_503_at_once(
    tmp_path: Path, pg_url: str
):
    """A database that does not answer at start: /healthz says since when it is
    waited for and why, the API says 503, each at once; once it answers, both serve."""
    away = free_port()  # nothing listens here until the test forwards it to PostgreSQL
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{away}")
    assert url != pg_url
    health, api = free_port(), free_port()
    config = tmp_path / "outboxd.yaml"
    config.write_text(
        CONFIG.replace("sqlite:///{db}", '"{db}"').format(db=url, health=health, api=api)
    )
    process = DaemonProcess(tmp_path, config, role="control")
    await process.start(health, wait=False)
    quick = aiohttp.ClientTimeout(total=2)
    try:
        async with aiohttp.ClientSession(timeout=quick) as session:

            async def waiting() -> dict | None:
                try:
                    async with session.get(f"http://127.0.0.1:{health}/healthz") as response:
                        body = await response.json()
                except (aiohttp.ClientError, TimeoutError):
                    return None
                problems = " ".join(body["problems"])
                said = "waiting for the database since" in problems and "refused" in problems
                return body if said else None

            body = await eventually(waiting, "/healthz to say it waits for the database and why",
                                    dump=process.output)  # fmt: skip
            assert body["status"] == "starting"
            for path in ("/api/v1/stats", "/", "/webhooks/x"):
                async with session.get(f"http://127.0.0.1:{api}{path}") as response:
                    problem = await response.json(content_type=None)
                    assert response.status == 503 and response.headers["Retry-After"] == "5"
                    assert "waiting for the database since" in problem["detail"]
            server = await asyncio.start_server(_forward, "127.0.0.1", away)
            try:

                async def ready() -> bool:
                    try:
                        async with session.get(f"http://127.0.0.1:{api}/api/v1/stats") as r:
                            return r.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        return False

                await eventually(ready, "the API to serve once the database answers",
                                 timeout=60, dump=process.output)  # fmt: skip
                status, body = await process.health()
                assert status == 200 and body["status"] == "ok"
            finally:
                assert await process.stop() == 0
                server.close()
    finally:
        process.kill()
