"""The frame's own HTTP server over real sockets, as a client speaks to it (raw bytes
where the point is what a client sends): routes, HEAD, 404 and 405, keep-alive and
Connection: close, the idle timeout, requests it cannot parse (400, one log line
without what was sent), bodies it does not take, a handler that fails, and a close
that lets an answer under way finish."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from daemon.runtime.plainhttp import Key, Request, Response, Routes, Server, http_date

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_loops]

SECRET = "obx_the-token-itself"
NAME = Key[str]("name")
LOG = logging.getLogger("test.plainhttp")


class Toy:
    """Routes: /hello (JSON, what the request carried), /boom (raises), /slow
    (answers once ``release`` is set)."""

    def __init__(self) -> None:
        self.routes = Routes()
        self.routes.state[NAME] = "toy"
        self.release = asyncio.Event()
        self.slow_started = asyncio.Event()
        self.routes.add_get("/hello", self.hello)
        self.routes.add_get("/boom", self.boom)
        self.routes.add_get("/slow", self.slow)

    async def hello(self, request: Request) -> Response:
        return Response.json(
            {
                "name": request.app[NAME],
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "agent": request.headers.get("user-agent"),
            }
        )

    async def boom(self, _: Request) -> Response:
        raise RuntimeError("the handler's own bug")

    async def slow(self, _: Request) -> Response:
        self.slow_started.set()
        await self.release.wait()
        return Response(body=b"done")


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def serve(routes: Routes, idle: float = 30.0) -> tuple[Server, int]:
    sock = listener()
    port: int = sock.getsockname()[1]
    server = Server(routes, idle, LOG)
    await server.start([sock])
    return server, port


@pytest.fixture
async def toy() -> AsyncIterator[tuple[Toy, int]]:
    t = Toy()
    server, port = await serve(t.routes)
    yield t, port
    t.release.set()
    await server.close()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in ``raw``, each (status, headers in lower case, body)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        size = int(headers["content-length"])
        out.append((int(lines[0].split(" ")[1]), headers, rest[:size]))
        raw = rest[size:]
    return out


async def test_a_route_answers_get_and_head_and_others_404_or_405(toy):
    _, port = toy
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}"
        async with session.get(f"{url}/hel%6Co?a=1&b=%20", headers={"User-Agent": "t"}) as r:
            assert r.status == 200 and r.content_type == "application/json"
            assert await r.json() == {
                "name": "toy",
                "method": "GET",
                "path": "/hello",
                "query": "a=1&b=%20",
                "agent": "t",
            }
            assert r.headers["Date"].endswith(" GMT")
        async with session.head(f"{url}/hello") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) > 0
            assert await r.read() == b""
        async with session.get(f"{url}/nothing") as r:
            assert r.status == 404
        async with session.post(f"{url}/hello", data=b"x") as r:
            assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"


async def test_keep_alive_serves_requests_in_turn_and_close_ends_the_connection(toy):
    _, port = toy
    two = (
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    [(first, headers, _), (second, last, _)] = answers(await exchange(port, two))
    assert (first, second) == (200, 404)
    assert "connection" not in headers and last["connection"] == "close"
    # HTTP/1.0 closes unless asked to keep the connection
    [(status, headers, body)] = answers(await exchange(port, b"GET /hello HTTP/1.0\r\n\r\n"))
    assert status == 200 and headers["connection"] == "close" and b'"GET"' in body
    kept = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello HTTP/1.0\r\n\r\n"
    [(_, headers, _), (_, last, _)] = answers(await exchange(port, kept))
    assert headers["connection"] == "keep-alive" and last["connection"] == "close"


async def test_an_idle_connection_is_closed_and_so_is_one_whose_request_never_ends():
    server, port = await serve(Toy().routes, idle=0.3)
    try:
        # between requests: the first answered, then the server closes
        [(status, _, _)] = answers(await exchange(port, b"GET /hello HTTP/1.1\r\n\r\n"))
        assert status == 200
        # a request line that never ends: closed without an answer
        assert await exchange(port, b"GET /hello HTTP/1.1\r\nHost: x") == b""
        assert server.connections == {}
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("sent", "words"),
    [
        (f"\x16\x03\x01{SECRET}\r\n\r\n".encode("latin-1"), "a malformed request line"),
        (b"\x16\x03\x01\xff\xfe" + SECRET.encode() + b"\r\n\r\n", "not HTTP"),
        (f"GET /{SECRET} HTTP/1.1 extra\r\n\r\n".encode(), "a malformed request line"),
        (f"GET /hello XTTP/1.1{SECRET}\r\n\r\n".encode(), "a malformed request line"),
        (b"GET /hello HTTP/3.0\r\n\r\n", "not HTTP/1.x"),
        (f"GET {SECRET} HTTP/1.1\r\n\r\n".encode(), "a malformed URL"),
        (f"GET /hello HTTP/1.1\r\nAuthorization {SECRET}\r\n\r\n".encode(), "a malformed header"),
        (f"GET /hello HTTP/1.1\r\nX-A: \u00e9{SECRET}\r\n\r\n".encode(), "a malformed header"),
        (f"GET /hello HTTP/1.1\r\nX-A: {'a' * 9000}{SECRET}\r\n\r\n".encode(), "longer than"),
        (b"GET /hello HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", "more headers than"),
        (f"GET /hello HTTP/1.1\r\nContent-Length: {SECRET}\r\n\r\n".encode(), "not as its headers"),
    ],
)
async def test_a_malformed_request_is_400_and_one_line_without_what_was_sent(
    toy, caplog, sent, words
):
    _, port = toy
    with caplog.at_level(logging.INFO, LOG.name):
        [(status, headers, _)] = answers(await exchange(port, sent))
    assert status == 400 and headers["connection"] == "close"
    [record] = caplog.records
    assert record.levelno == logging.WARNING and words in record.getMessage()
    assert SECRET not in record.getMessage() + repr(vars(record))
    assert record.remote == "127.0.0.1"  # type: ignore[attr-defined]


async def test_a_body_is_read_and_thrown_away_unless_too_large_or_chunked(toy):
    _, port = toy
    small = b"GET /hello HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + (
        b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert [s for s, _, _ in answers(await exchange(port, small))] == [200, 200]
    large = b"GET /hello HTTP/1.1\r\nContent-Length: 70000\r\n\r\n" + b"x" * 100
    [(status, headers, _)] = answers(await exchange(port, large))
    assert status == 413 and headers["connection"] == "close"
    chunked = b"GET /hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    [(status, headers, _)] = answers(await exchange(port, chunked))
    assert status == 411 and headers["connection"] == "close"


async def test_a_handler_that_fails_is_500_with_its_traceback_logged(toy, caplog):
    _, port = toy
    with caplog.at_level(logging.INFO, LOG.name):
        sent = b"GET /boom HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n"
        [(status, headers, _)] = answers(await exchange(port, sent))
    assert status == 500 and headers["connection"] == "close"  # the next one is not read
    [record] = caplog.records
    assert record.getMessage() == "request handler failed" and record.exc_info is not None


async def test_a_fallback_answers_every_method_and_path():
    routes = Routes()

    async def everything(request: Request) -> Response:
        return Response(503, f"{request.method} {request.path}".encode(), headers={"X-A": "1"})

    routes.fallback = everything
    server, port = await serve(routes)
    try:
        sent = b"DELETE /api/v1/x?y=1 HTTP/1.1\r\nConnection: close\r\n\r\n"
        [(status, headers, body)] = answers(await exchange(port, sent))
        assert (status, headers["x-a"], body) == (503, "1", b"DELETE /api/v1/x")
    finally:
        await server.close()


async def test_close_lets_an_answer_under_way_finish_and_closes_idle_connections():
    toy = Toy()
    server, port = await serve(toy.routes)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(b"GET /hello HTTP/1.1\r\n\r\n")
    await idle_reader.readuntil(b"\r\n\r\n")  # answered, the connection kept
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
    slow_writer.write(b"GET /slow HTTP/1.1\r\n\r\n")
    await toy.slow_started.wait()
    closing = asyncio.create_task(server.close(timeout=30))
    assert (await asyncio.wait_for(idle_reader.read(), 10)).endswith(b"}")  # its body, then EOF
    toy.release.set()
    [(status, headers, body)] = answers(await asyncio.wait_for(slow_reader.read(), 10))
    assert (status, headers["connection"], body) == (200, "close", b"done")
    await asyncio.wait_for(closing, 10)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    for writer in (idle_writer, slow_writer):
        writer.close()


async def test_close_cancels_an_answer_that_outlasts_its_deadline():
    toy = Toy()
    server, port = await serve(toy.routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /slow HTTP/1.1\r\n\r\n")
    await toy.slow_started.wait()
    await asyncio.wait_for(server.close(timeout=0.1), 10)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, never answered
    assert server.connections == {}
    writer.close()


def test_the_date_header_is_imf_fixdate_whatever_the_locale():
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1_764_921_600.5) == "Fri, 05 Dec 2025 08:00:00 GMT"
