"""The store's own process: runs store operations sent over a socket, one at a time.

A daemon whose event loop is busy (a dispatcher sending thousands of messages a
second) and a store thread in the same interpreter take turns on one interpreter
lock: every SQLite or PostgreSQL call lets go of it and must wait to get it back.
Run in a process of its own, the store's work overlaps the loop's instead.

The parent starts ``python -m daemon.store.worker FD`` with one end of a socket
pair as FD and sends, as length-prefixed pickles: first the database settings
and the log settings, then requests ``(seq, operation, args, kwargs)``, each
answered ``(seq, ok, value)`` in order. Each operation is one unit of work in
one transaction, as on a store thread. The worker exits when the socket closes
(the parent stopped or died); SIGTERM and SIGINT, which supervisord sends to
the whole process group, are ignored: the parent decides when the store stops,
after its drain has written the last outcomes.
"""

from __future__ import annotations

import logging
import pickle
import signal
import socket
import struct
import sys
from typing import Any, BinaryIO

from daemon.store import Store, StoreError, open_database
from daemon.store.types import InvalidMessage

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 31  # the largest request or answer (2 GiB)
log = logging.getLogger("outboxd.store")
EXPECTED = (StoreError, InvalidMessage)  # refused input, a database that is down


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame, or None at a clean end of stream."""
    head = stream.read(HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise EOFError("stream ended inside a frame header")
    (size,) = HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError(f"stream ended inside a frame ({len(body)} of {size} bytes)")
    return body


def encode(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) >= MAX_FRAME:
        raise StoreError(f"store message too big to pass ({len(body)} bytes)")
    return HEADER.pack(len(body)) + body


def answer(seq: int, ok: bool, value: Any) -> bytes:
    try:
        if not ok:  # an error must also unpickle on the other side (rare: check it)
            pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return encode((seq, ok, value))
    except Exception as exc:  # an answer or error that does not pickle
        detail = f"{type(value).__name__}: {value}" if not ok else repr(exc)
        return encode((seq, False, StoreError(f"store answer could not be passed: {detail}")))


def serve(sock: socket.socket) -> int:
    stream = sock.makefile("rb")
    first = read_frame(stream)
    if first is None:
        return 0
    database, log_level, log_format, process = pickle.loads(first)
    from daemon.logs import setup_logging

    setup_logging(log_level, log_format, f"{process}.store")
    store = Store(open_database(database))
    try:
        while (frame := read_frame(stream)) is not None:
            seq, name, args, kwargs = pickle.loads(frame)
            try:
                result = (seq, True, getattr(store, name)(*args, **kwargs))
            except Exception as exc:
                if not isinstance(exc, EXPECTED):  # a bug: its traceback stays here
                    log.exception("store operation %s failed", name)
                result = (seq, False, exc)
            sock.sendall(answer(*result))
    finally:
        store.close()
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    try:
        return serve(sock)
    except (EOFError, ConnectionError) as exc:
        log.error("store worker lost its parent: %s", exc)
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
