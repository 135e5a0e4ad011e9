"""The store's own process: runs store operations sent over a socket, one at a time.

A daemon whose event loop is busy (a dispatcher sending thousands of messages a
second) and a store thread in the same interpreter take turns on one interpreter
lock: every SQLite or PostgreSQL call lets go of it and must wait to get it back.
Run in a process of its own, the store's work overlaps the loop's instead.

The parent starts ``python -m daemon.store.worker FD [BACKEND]`` in a session of
its own, with one end of a socket pair as FD; given the backend of its database
(``sqlite``, ``postgresql``), the worker loads no other backend's driver
(``daemon.store.drivers``). It imports the store at once, while the parent loads
its settings, and then waits for them. Frames both ways are a header (body length,
sequence number) and a pickle. The first request (sequence 0) carries the
database and log settings and is answered once the database is set up; then
each request ``(operation, args, kwargs)`` is answered ``(ok, value)`` under its
sequence number, in order. Each operation is one unit of work in one
transaction, as on a store thread. The worker exits when the socket closes (the
parent is done with it, or died); SIGTERM and SIGINT are ignored: the parent
decides when the store stops, after its drain has written the last outcomes.
"""

from __future__ import annotations

import logging
import pickle
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from daemon.domain.errors import Refused, StoreError, StoreUnavailable
from daemon.store.address import Address, backend_of
from daemon.store.drivers import hide_unused
from daemon.store.frames import answer, read_frame

if TYPE_CHECKING:  # imported in main, once the drivers not needed are hidden
    from daemon.store.sync import Store

log = logging.getLogger("outboxd.store")
EXPECTED = (StoreError, Refused)  # refused input, a database that is down


def run_one(store: Store, body: bytes) -> tuple[bool, Any]:
    try:
        name, args, kwargs = pickle.loads(body)
    except Exception as exc:
        return False, TypeError(f"store request could not be read: {exc!r}")
    operation = getattr(type(store), name, None)
    if not callable(operation) or name.startswith("_"):
        return False, TypeError(f"{name!r} is not a store operation")
    try:
        return True, operation(store, *args, **kwargs)
    except Exception as exc:
        if not isinstance(exc, EXPECTED):  # a bug: its traceback stays here
            log.exception("store operation %s failed", name)
        return False, exc


def open_store(body: bytes, backend: str | None = None) -> Store:
    """The store of the database the hello names, for a worker started for
    ``backend`` (None: any)."""
    from daemon.domain.logs import setup_logging
    from daemon.store.db import open_database
    from daemon.store.sync import Store

    database: Address
    # (database, level, format, process, node); an older daemon sends no node
    database, log_level, log_format, process, *rest = pickle.loads(body)
    node = rest[0] if rest else None
    setup_logging(log_level, log_format, f"{process}.store", node)
    wanted = backend_of(database.url)
    if backend is not None and wanted != backend:  # the next worker is started for any
        log.error("store worker started for %s, given a %s database", backend, wanted)
        raise StoreUnavailable(f"the store process was started for {backend}, not {wanted}")
    return Store(open_database(database))


def serve(sock: socket.socket, backend: str | None = None) -> int:
    stream = sock.makefile("rb")
    hello = read_frame(stream)
    if hello is None:
        return 0
    try:
        store = open_store(hello[1], backend)
    except Exception as exc:
        sock.sendall(answer(hello[0], False, exc))
        return 1
    sock.sendall(answer(hello[0], True, None))
    try:
        while (frame := read_frame(stream)) is not None:
            sock.sendall(answer(frame[0], *run_one(store, frame[1])))
    finally:
        store.close()
    return 0


def main(argv: list[str]) -> int:
    # Started in a session of its own, so a signal to the daemon's process group
    # does not reach it; one sent to it directly is ignored as well.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    backend = argv[2] if len(argv) > 2 else None
    hide_unused(backend)
    import daemon.store.sync  # noqa: F401 - the store and its driver, now: before the settings come

    return run(sock, backend)


def run(sock: socket.socket, backend: str | None) -> int:
    """Serve the parent on ``sock`` until it closes its end; the exit code."""
    try:
        return serve(sock, backend)
    except (EOFError, ConnectionError) as exc:
        log.error("store worker lost its parent: %s", exc)
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
