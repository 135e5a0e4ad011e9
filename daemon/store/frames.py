"""The frames a daemon and its store worker exchange over their socket pair: a
header (body length, sequence number) and a pickle. Light: the daemon's side
loads no store."""

from __future__ import annotations

import pickle
import struct
from typing import Any, BinaryIO

from daemon.domain.errors import StoreError

HEADER = struct.Struct(">QQ")  # body length, sequence number


def read_frame(stream: BinaryIO) -> tuple[int, bytes] | None:
    """The next (sequence, body), or None at a clean end of stream."""
    head = stream.read(HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise EOFError("stream ended inside a frame header")
    size, seq = HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError(f"stream ended inside a frame ({len(body)} of {size} bytes)")
    return seq, body


def encode(seq: int, value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body), seq) + body


def answer(seq: int, ok: bool, value: Any) -> bytes:
    try:
        if not ok:  # an error must also unpickle on the other side (rare: check it)
            pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return encode(seq, (ok, value))
    except Exception as exc:  # an answer or error that does not pickle
        detail = f"{type(value).__name__}: {value}" if not ok else repr(exc)
        return encode(seq, (False, StoreError(f"store answer could not be passed: {detail}")))
