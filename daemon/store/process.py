"""Run store operations from asyncio in a worker process (see ``daemon.store.worker``;
one started ahead by ``daemon.store.spawn`` is taken over).

A ``StoreRunner`` like ``StoreThread``: ``await call(name, args, kwargs)``.
Requests go over a socket pair and are answered in order; the event loop reads
the answers itself, so no thread of this process waits for the interpreter
lock. A cancelled await does not cancel the unit of work: the worker runs it to
its commit or rollback. When the worker dies, the calls waiting on it fail with
``StoreUnavailable`` (the loops retry, as for a database that is down) and the
next call starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import socket
import subprocess
import time
from typing import Any, cast

from daemon.config.database import DatabaseSettings
from daemon.domain.errors import StoreError, StoreUnavailable
from daemon.store.address import Address
from daemon.store.frames import HEADER, encode
from daemon.store.spawn import WORKER, Spawned, worker_argv

log = logging.getLogger("outboxd.store")
START_TIMEOUT = 60.0  # seconds for a new worker to import and open the database
STOP_TIMEOUT = 5.0  # seconds a closing worker gets to finish its unit before it is killed


class _Answers(asyncio.Protocol):
    """Reads the worker's answers and resolves the waiting calls."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.buffer = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        at, end = 0, len(buffer)
        while end - at >= HEADER.size:
            size, seq = HEADER.unpack_from(buffer, at)
            if end - at - HEADER.size < size:
                break
            body = buffer[at + HEADER.size : at + HEADER.size + size]
            at += HEADER.size + size
            waiter = self.pending.pop(seq, None)
            if waiter is None or waiter.done():
                continue  # its caller stopped waiting; the work was done all the same
            try:
                ok, value = pickle.loads(body)
            except Exception as exc:
                ok, value = False, StoreError(f"store answer could not be read: {exc!r}")
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


class _Adopted:
    """A worker started by ``start_worker``, awaited as an asyncio subprocess is."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    async def wait(self) -> int:
        while self._process.poll() is None:  # no child watcher for a process not ours
            await asyncio.sleep(0.01)
        return self._process.returncode

    def kill(self) -> None:
        self._process.kill()


class StoreProcess:
    def __init__(
        self,
        database: DatabaseSettings,
        log_level: str = "INFO",
        log_format: str = "json",
        process: str = "outboxd",
        spawned: Spawned | None = None,
        node: str | None = None,
    ) -> None:
        # plain values: the worker loads no settings models to read them
        self._hello = (Address.of(database), log_level, log_format, process, node)
        self._seq = itertools.count(1)  # 0 is the hello
        self._answers: _Answers | None = None
        self._proc: asyncio.subprocess.Process | _Adopted | None = None
        self._spawned = spawned
        self._starting = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's process id, while one runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Await the store operation ``name`` run in the worker (which refuses a
        name that is not a store operation)."""
        if self._closed:
            raise StoreUnavailable("the store process is closed")
        seq = next(self._seq)
        try:
            request = encode(seq, (name, args, kwargs))
        except Exception as exc:
            raise TypeError(f"arguments of {name} cannot be passed: {exc}") from exc
        answers = self._answers
        if answers is None or not answers.open:
            answers = await self._start()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answers.pending[seq] = waiter
        assert answers.transport is not None
        answers.transport.write(request)
        return await asyncio.shield(waiter)

    async def _start(self) -> _Answers:
        async with self._starting:
            if self._closed:
                raise StoreUnavailable("the store process is closed")
            if self._answers is not None and self._answers.open:
                return self._answers  # started by another call while this one waited
            await self._stop_worker()
            self._answers = await self._spawn()
            return self._answers

    async def _spawn(self) -> _Answers:
        spawned, self._spawned = self._spawned, None
        if spawned is not None:  # started ahead: its imports are done or under way
            ours = spawned.sock
            self._proc = _Adopted(spawned.process)
        else:
            ours, theirs = socket.socketpair()
        try:
            if spawned is None:
                try:
                    self._proc = await asyncio.create_subprocess_exec(
                        *worker_argv(theirs.fileno(), WORKER),
                        pass_fds=(theirs.fileno(),),
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,  # signals to the daemon's group are not for it
                    )
                finally:
                    theirs.close()
            loop = asyncio.get_running_loop()
            _, answers = await loop.create_unix_connection(_Answers, sock=ours)
        except OSError as exc:
            ours.close()
            raise StoreUnavailable(f"could not start the store process: {exc}") from exc
        except BaseException:
            ours.close()
            raise
        ready: asyncio.Future[None] = loop.create_future()
        answers.pending[0] = ready
        assert answers.transport is not None
        answers.transport.write(encode(0, self._hello))
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT)
        except TimeoutError:
            answers.transport.close()
            await self._stop_worker()
            raise StoreUnavailable(
                f"the store process was not ready within {START_TIMEOUT:g}s"
            ) from None
        except StoreUnavailable:  # it closed the socket: it exited
            proc = self._proc
            await self._stop_worker()
            code = proc.returncode if proc is not None else None
            raise StoreUnavailable(
                f"the store process exited (code {code}) before it was ready; its log says why"
            ) from None
        except BaseException:  # cancelled, or it refused the settings (its error)
            answers.transport.close()
            await self._stop_worker()
            raise
        log.debug("store process started", extra={"pid": self.pid})
        return answers

    async def _stop_worker(self, deadline: float | None = None) -> None:
        """Wait for the worker to exit (its socket is closed or closing); kill it
        when it has not by the deadline."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if deadline is None:
            deadline = time.monotonic() + STOP_TIMEOUT
        try:
            await asyncio.wait_for(proc.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("store process did not stop in time; killing it", extra={"pid": proc.pid})
            proc.kill()
            await proc.wait()
        if proc.returncode:
            log.warning("store process exited", extra={"exit_code": proc.returncode})

    async def aclose(self) -> None:
        """Shut the socket for writing: the worker answers what it was sent, sees the
        end and exits; wait for that (killing it after ``STOP_TIMEOUT``). Calls
        after this fail with ``StoreUnavailable``."""
        async with self._starting:
            self._closed = True
            deadline = time.monotonic() + STOP_TIMEOUT
            spawned, self._spawned = self._spawned, None
            if spawned is not None:  # never used: its end of the socket closed, it exits
                spawned.sock.close()
                self._proc = _Adopted(spawned.process)
            answers, self._answers = self._answers, None
            if answers is not None and answers.transport is not None:
                if answers.open:
                    answers.transport.write_eof()
                with contextlib.suppress(TimeoutError):
                    remaining = max(0.0, deadline - time.monotonic())
                    await asyncio.wait_for(asyncio.shield(answers.closed), remaining)
                answers.transport.close()
            await self._stop_worker(deadline)
