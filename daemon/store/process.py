"""Run store operations from asyncio in a worker process (see ``daemon.store.worker``).

The same interface as ``StoreThread``: ``await run(store.operation, *args)``.
Requests go over a socket pair as length-prefixed pickles and are answered in
order; the event loop reads the answers itself, so no thread of this process
waits for the interpreter lock. A cancelled await does not cancel the unit of
work: the worker runs it to its commit or rollback. When the worker dies, the
calls waiting on it fail with ``StoreUnavailable`` and the next call starts a
new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from daemon.settings import DatabaseSettings
from daemon.store import Store, StoreUnavailable
from daemon.store.worker import HEADER, encode

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("outboxd.store")
STOP_TIMEOUT = 10.0  # seconds the worker gets to finish its last unit after the socket closes


class _Answers(asyncio.Protocol):
    """Reads the worker's answers and resolves the waiting calls."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.buffer = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        at, end = 0, len(buffer)
        while end - at >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, at)
            if end - at - HEADER.size < size:
                break
            body = buffer[at + HEADER.size : at + HEADER.size + size]
            at += HEADER.size + size
            seq, ok, value = pickle.loads(body)
            waiter = self.pending.pop(seq, None)
            if waiter is None or waiter.done():
                continue  # its caller stopped waiting; the work was done all the same
            if ok:
                waiter.set_result(value)
            else:
                waiter.set_exception(value)
        del buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(
                    StoreUnavailable("the store process stopped before it answered")
                )
        if not self.closed.done():
            self.closed.set_result(None)


class StoreProcess:
    def __init__(
        self,
        store: Store,
        database: DatabaseSettings,
        log_level: str = "INFO",
        log_format: str = "json",
        process: str = "outboxd",
    ) -> None:
        self.store = store  # names the operations; its own connection is not used
        self._hello = (database, log_level, log_format, process)
        self._seq = itertools.count()
        self._answers: _Answers | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._starting = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The worker's process id, while one runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def run(self, operation: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``operation(*args, **kwargs)`` (a method of ``store``) run in the worker."""
        if getattr(operation, "__self__", None) is not self.store:
            raise TypeError(f"{operation!r} is not an operation of this store")
        answers = self._live() or await self._start()
        seq = next(self._seq)
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            request = encode((seq, operation.__name__, args, kwargs))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(f"arguments of {operation.__name__} cannot be passed: {exc}") from exc
        answers.pending[seq] = waiter
        assert answers.transport is not None
        answers.transport.write(request)
        return await asyncio.shield(waiter)

    def _live(self) -> _Answers | None:
        answers = self._answers
        if answers is None or answers.transport is None or answers.transport.is_closing():
            return None
        return answers

    async def _start(self) -> _Answers:
        async with self._starting:
            live = self._live()  # started by another call while this one waited
            if live is not None:
                return live
            await self._reap()
            ours, theirs = socket.socketpair()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "daemon.store.worker",
                    str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                ours.close()
                raise StoreUnavailable(f"could not start the store process: {exc}") from exc
            finally:
                theirs.close()
            loop = asyncio.get_running_loop()
            _, answers = await loop.create_unix_connection(_Answers, sock=ours)
            assert answers.transport is not None
            answers.transport.write(encode(self._hello))
            self._answers = answers
            log.debug("store process started", extra={"pid": self._proc.pid})
            return answers

    async def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if proc.returncode:
            log.warning("store process exited", extra={"exit_code": proc.returncode})

    async def aclose(self) -> None:
        """Shut the socket for writing: the worker answers what it was sent, sees the
        end and exits; wait for that (then close and reap it)."""
        answers, self._answers = self._answers, None
        if answers is not None and answers.transport is not None:
            transport = answers.transport
            if not transport.is_closing():
                transport.write_eof()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(answers.closed), STOP_TIMEOUT)
            transport.close()
        await self._reap()
