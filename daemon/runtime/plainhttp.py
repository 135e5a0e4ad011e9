"""HTTP/1.1 on asyncio's streams, for the frame's own endpoints: ``/healthz`` and
``/metrics`` on every role's port, and the 503 a role's own port answers until the
role opens it (``daemon.runtime.frame``).

A web framework costs a role's start a tenth of a second (aiohttp's import) for a
handful of GET routes; this is what those need and no more:

- GET and HEAD by path (percent-decoded; the query is handed to the handler);
  404 for a path no route has, 405 (with ``Allow``) for another method; or one
  handler for every method and path (``Routes.fallback``);
- HTTP/1.1 keep-alive (HTTP/1.0's on request), ``Connection: close`` honoured;
- a connection with no request under way (between requests, or while a request's
  line and headers are still arriving) is closed after the idle timeout, as is one
  that does not read its answer within it;
- a request it cannot parse (a line over ``MAX_LINE`` bytes, more than
  ``MAX_HEADERS`` headers, a malformed request line or header, not HTTP/1.x) is
  answered 400 and the connection closed, logged in one short line, rate-limited,
  never a byte of what was sent (``daemon.runtime.refusals``);
- a request body (none is expected) is read and thrown away up to ``MAX_BODY``
  bytes; a larger one is answered 413, a chunked one 411, and the connection closed;
- a handler that raises is answered 500, its traceback logged.

``Server.close`` stops listening, lets answers under way finish within a deadline
and closes every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

from daemon.runtime.refusals import RefusalLog

MAX_LINE = 8190  # bytes of a request line or a header line, at most (as aiohttp)
MAX_HEADERS = 100  # header lines of a request, at most
MAX_BODY = 65536  # bytes of a request body read (and thrown away), at most
SHUTDOWN_TIMEOUT = 1.0  # seconds answers under way get to finish at close
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

T = TypeVar("T")


class Key(Generic[T]):
    """A typed key of ``Routes.state`` (what a handler reads as ``request.app[key]``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


class State:
    """What the routes' owner hands every handler, by typed key."""

    def __init__(self) -> None:
        self._values: dict[Key[Any], Any] = {}

    def __setitem__(self, key: Key[T], value: T) -> None:
        self._values[key] = value

    def __getitem__(self, key: Key[T]) -> T:
        value: T = self._values[key]
        return value


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: str  # as sent, after the ``?``
    headers: dict[str, str]  # names in lower case; repeated ones joined with ", "
    remote: str
    app: State


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls,
        value: object,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Response:
        return cls(status, json.dumps(value).encode(), content_type, headers or {})


Handler = Callable[[Request], Awaitable[Response]]


class Routes:
    """GET (and HEAD) handlers by path, or one ``fallback`` for every request."""

    def __init__(self) -> None:
        self.get: dict[str, Handler] = {}
        self.fallback: Handler | None = None
        self.state = State()

    def add_get(self, path: str, handler: Handler) -> None:
        if path in self.get:
            raise ValueError(f"a route for GET {path} is there already")
        self.get[path] = handler

    def handler(self, method: str, path: str) -> Handler:
        if self.fallback is not None:
            return self.fallback
        handler = self.get.get(path)
        if handler is None:
            return _answer(Response(404, b"404: Not Found"))
        if method not in ("GET", "HEAD"):
            return _answer(
                Response(405, b"405: Method Not Allowed", headers={"Allow": "GET, HEAD"})
            )
        return handler


def _answer(response: Response) -> Handler:
    async def handler(_: Request) -> Response:
        return response

    return handler


class Malformed(Exception):
    """A request that is not HTTP/1.x as this server reads it: answered 400 (or the
    status given), the connection closed."""

    def __init__(self, what: str, status: int = 400) -> None:
        super().__init__(what)
        self.what = what
        self.status = status


@dataclass
class _Head:
    method: str
    target: str
    version: str
    headers: dict[str, str]


def http_date(now: float) -> str:
    """RFC 9110's IMF-fixdate of a Unix time (no locale involved)."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


async def _line(reader: asyncio.StreamReader, not_ascii: str) -> str:
    """One CRLF- (or LF-) ended line as text; too long, or not ASCII (``Malformed``
    saying ``not_ascii``), is ``Malformed``."""
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise Malformed("a request line or header longer than the server reads") from None
    try:
        return raw.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise Malformed(not_ascii) from None


async def read_head(reader: asyncio.StreamReader) -> _Head | None:
    """A request's line and headers; None when the client closed before sending one."""
    not_http = "not HTTP (TLS to a plain HTTP port?)"
    try:
        line = await _line(reader, not_http)
        while not line:  # RFC 9112 2.2: empty lines before a request line are ignored
            line = await _line(reader, not_http)
    except asyncio.IncompleteReadError:
        return None
    parts = line.split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN:
        raise Malformed("a malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise Malformed(
            "not HTTP/1.x" if version.startswith("HTTP/") else "a malformed request line"
        )
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        try:
            line = await _line(reader, "a malformed header")
        except asyncio.IncompleteReadError:
            raise Malformed("a request cut short") from None
        if not line:
            return _Head(method, target, version, headers)
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= _TOKEN:
            raise Malformed("a malformed header")
        name, value = name.lower(), value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise Malformed("more headers than the server reads")


def _split_target(target: str) -> tuple[str, str]:
    """The path (percent-decoded) and the query of a request's target."""
    if target.startswith(("http://", "https://")):  # absolute form: the path after the host
        rest = target.split("//", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    if not target.startswith("/"):
        raise Malformed("a malformed URL")
    path, _, query = target.partition("?")
    return unquote(path.partition("#")[0]), query


def _tokens(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


class Server:
    """``routes`` served on listening sockets (``start``) until ``close``."""

    def __init__(self, routes: Routes, idle_timeout: float, logger: logging.Logger) -> None:
        self.routes = routes
        self.idle_timeout = idle_timeout
        self.log = logger
        self.refusals = RefusalLog(logger)
        self.servers: list[asyncio.Server] = []
        self.connections: dict[asyncio.Task[Any], bool] = {}  # task → answering now
        self.closing = False

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        """Serve on each of ``sockets`` (bound and listening; closed by ``close``)."""
        try:
            for sock in sockets:
                self.servers.append(
                    await asyncio.start_server(self._connection, sock=sock, limit=MAX_LINE + 2)
                )
        except BaseException:
            await self.close()
            raise

    async def close(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop listening; answers under way get ``timeout`` seconds to finish,
        then every connection is closed."""
        self.closing = True
        for server in self.servers:
            server.close()
        for task, answering in list(self.connections.items()):
            if not answering:
                task.cancel()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=timeout)
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(list(self.connections))
        for server in self.servers:
            await server.wait_closed()
        self.servers = []

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.closing:
            writer.close()
            return
        self.connections[task] = False
        peer = writer.get_extra_info("peername")
        remote = str(peer[0]) if isinstance(peer, tuple) else "?"
        try:
            while not self.closing:
                self.connections[task] = False
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        head = await read_head(reader)
                    if head is None:
                        break
                    self.connections[task] = True
                    keep = await self._request(head, reader, writer, remote)
                except Malformed as exc:
                    self.refusals.refused(exc.what, exc.status, "Malformed", remote)
                    body = f"{exc.status}: {REASONS[exc.status]}".encode()
                    await self._write(writer, "HTTP/1.1", "GET", Response(exc.status, body), False)
                    break
                if not keep:
                    break
        except (TimeoutError, ConnectionError, asyncio.CancelledError):
            pass  # idle too long, gone, or closing: the connection ends
        finally:
            self.connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _request(
        self, head: _Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: str
    ) -> bool:
        """Answer one request; whether the connection stays open for the next."""
        connection = _tokens(head.headers.get("connection", ""))
        if head.version == "HTTP/1.1":
            keep = "close" not in connection
        else:
            keep = "keep-alive" in connection
        path, query = _split_target(head.target)
        if "transfer-encoding" in head.headers:
            response = Response(411, b"411: Length Required")
            return await self._write(writer, head.version, head.method, response, False)
        length = head.headers.get("content-length", "0")
        if not length.isdigit():
            raise Malformed("a body that is not as its headers say")
        if int(length) > MAX_BODY:
            response = Response(413, b"413: Content Too Large")
            return await self._write(writer, head.version, head.method, response, False)
        if int(length):
            async with asyncio.timeout(self.idle_timeout):
                await reader.readexactly(int(length))  # nothing here takes a body
        request = Request(head.method, path, query, head.headers, remote, self.routes.state)
        try:
            response = await self.routes.handler(head.method, path)(request)
        except Exception:
            self.log.exception("request handler failed", extra={"path": path[:64]})
            response, keep = Response(500, b"500: Internal Server Error"), False
        return await self._write(writer, head.version, head.method, response, keep)

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        version: str,
        method: str,
        response: Response,
        keep: bool,
    ) -> bool:
        keep = keep and not self.closing
        reason = REASONS.get(response.status, "")
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            f"Date: {http_date(time.time())}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if not keep:
            lines.append("Connection: close")
        elif version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(head if method == "HEAD" else head + response.body)
        async with asyncio.timeout(self.idle_timeout):  # a client that does not read
            await writer.drain()
        return keep
