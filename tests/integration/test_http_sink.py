"""The HTTP sink itself: its faults, and ``python -m daemon.sim.http`` as a process."""

import asyncio
import re
import signal
import sys

import aiohttp
import pytest

from daemon.channels.http.rules import signature
from daemon.sim.http import Faults, HttpSink
from tests.support.processes import PROCESS_WAIT

pytestmark = pytest.mark.timeout(30)


async def post(url: str, body: bytes = b"{}", **headers: str) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers, allow_redirects=False) as response,
    ):
        await response.read()
        return response.status, dict(response.headers)


async def test_records_requests_and_answers_the_configured_status():
    async with HttpSink(Faults(status=503, headers={"Retry-After": "5"})) as sink:
        status, headers = await post(sink.url("/a?b=1"), b"hello", **{"X-Test": "1"})
        assert (status, headers["Retry-After"]) == (503, "5")
        [request] = sink.requests
        assert (request.method, request.path, request.body) == ("POST", "/a?b=1", b"hello")
        assert request.headers["x-test"] == "1"


async def test_fail_first_then_status():
    async with HttpSink(Faults(fail_first=2, fail_status=429)) as sink:
        statuses = [(await post(sink.url()))[0] for _ in range(3)]
        assert statuses == [429, 429, 200]
        assert sink.failed == 2


async def test_credentials_are_checked():
    faults = Faults(bearer_token="t0k", hmac_secret="s3c")
    async with HttpSink(faults) as sink:
        good = {"Authorization": "Bearer t0k", "X-Outboxd-Signature": signature(b"s3c", b"{}")}
        assert (await post(sink.url(), b"{}", **good))[0] == 200
        assert (await post(sink.url(), b"{ }", **good))[0] == 401  # signature of other bytes
        assert (await post(sink.url(), b"{}", **{**good, "Authorization": "Bearer x"}))[0] == 401
        assert (await post(sink.url(), b"{}"))[0] == 401
        assert len(sink.requests) == 4  # refused ones are recorded too


async def test_keep_bounds_the_record():
    async with HttpSink(keep=2) as sink:
        for n in range(4):
            await post(sink.url(f"/{n}"))
        assert [r.path for r in sink.requests] == ["/2", "/3"]


async def test_stop_does_not_wait_for_a_delayed_answer_the_client_gave_up_on():
    # an answer an hour away: a stop that waited for it would run into the test's timeout
    sink = HttpSink(Faults(delay=3600))
    await sink.start()
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(TimeoutError):
            await session.post(sink.url(), data=b"{}")
    await sink.stop()


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
async def test_runs_as_a_process_and_exits_0_on_sigterm():
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.sim.http",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--status",
        "202",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 10)
        match = re.search(rb"listening .*port=(\d+)", line)
        assert match, line
        base = f"http://127.0.0.1:{int(match[1])}"

        assert (await post(f"{base}/hook", b'{"n": 1}'))[0] == 202
        async with aiohttp.ClientSession() as session, session.get(f"{base}/_sink/requests") as r:
            listed = await r.json()
        assert [(e["method"], e["path"], e["body"]) for e in listed] == [
            ("POST", "/hook", '{"n": 1}')
        ]

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), PROCESS_WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
async def test_process_exits_0_on_sigint():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.sim.http", "--port", "0", stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        assert b"listening" in await asyncio.wait_for(process.stderr.readline(), 10)
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), PROCESS_WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
