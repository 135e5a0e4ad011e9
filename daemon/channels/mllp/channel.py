"""HL7 v2 over MLLP: one persistent connection per worker, one message in
flight on it, the ACK read back and judged.

What each answer becomes:

- ACK AA or CA: delivered, with the ACK as the response.
- ACK AR or CR: rejected. AE or CE: rejected, or retried when the channel
  says ``on_application_error: retry``. The connection is kept.
- An ACK whose MSA-2 is not the MSH-10 just sent: the stream is out of step,
  so the connection is dropped and the message retried (``transport_error``:
  a peer that does this every time should open the breaker).
- No ACK within ``response_timeout``, a garbled answer (bad framing, not an
  ACK, larger than ``MAX_ACK_BYTES``), a refused, reset or closed connection,
  a failed TLS handshake: retry with ``transport_error`` and drop the
  connection; the next send connects afresh. Dropping is what keeps a late
  ACK of a timed-out message from being read as the answer to the next one.
- A payload with no MSH-10, or holding an MLLP framing byte (0x0B, 0x1C):
  rejected without connecting; sending it cannot succeed.

A connection the peer closed while idle is noticed before the next send and
replaced without a failed attempt. ``connect_timeout`` bounds the TCP connect
and the TLS handshake together; ``response_timeout`` bounds writing the message
and reading its whole ACK.

Whitespace between frames is skipped (logged once per connection); any other
byte outside a frame counts as a garbled answer. A retry sends the very same
bytes, so the peer sees the same MSH-10 and can discard the repeat: this
module never rewrites a payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import weakref
from typing import Any, cast

from daemon.channels.base import Envelope, Outcome
from daemon.channels.mllp.settings import MllpSettings, client_ssl_context
from daemon.hl7 import (
    ACCEPTED,
    REJECTED,
    Ack,
    FrameDecoder,
    FramingError,
    InvalidHL7,
    frame,
    plain_accept,
    raw_control_id,
    read_ack,
)

log = logging.getLogger("outboxd.channels.mllp")

MAX_ACK_BYTES = 1 << 20  # a bigger answer is treated as garbage
CLOSE_TIMEOUT = 1.0


class _Garbled(Exception):
    """The peer answered something that is not an MLLP-framed ACK."""


class _Closed(Exception):
    """The peer closed the connection before the whole ACK arrived."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own text repeats the address
    return str(exc) or type(exc).__name__


class MllpChannel:
    """An MLLP channel from its settings; hands out one sender per worker."""

    def __init__(self, settings: MllpSettings) -> None:
        self.settings = settings
        self.target = f"{settings.host}:{settings.port}"
        self._ssl = client_ssl_context(settings.tls) if settings.tls else None
        self._senders: weakref.WeakSet[MllpSender] = weakref.WeakSet()

    def sender(self) -> MllpSender:
        sender = MllpSender(self.settings, self._ssl)
        self._senders.add(sender)
        return sender

    async def close(self) -> None:
        for sender in list(self._senders):
            await sender.close()


class _Connection(asyncio.Protocol):
    """The client end of one connection: bytes in, frames out to the one send
    waiting for its ACK. Frames that arrive while no send waits stay buffered,
    so the next send reads them first (and a stale ACK shows as a mismatch)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(MAX_ACK_BYTES)
        self.waiter: asyncio.Future[bytes] | None = None
        self.closed = False  # the peer closed, or the connection broke
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._warned = False  # whitespace between frames is logged once per connection

    @property
    def stale(self) -> bool:
        """Closed by the peer, broken, or closing (``connection_lost`` still to come)."""
        return self.closed or self.transport is None or self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = self.decoder.whole(data)  # the usual case: the ACK in one piece
            if body is not None:
                waiter.set_result(body)
                return
            self.decoder.feed(data)
            self.deliver(waiter)
            return
        self.decoder.feed(data)
        if self.decoder.pending > 2 * MAX_ACK_BYTES and self.transport is not None:
            self.transport.abort()  # a peer talking while nobody asked: not an ACK stream

    def deliver(self, waiter: asyncio.Future[bytes]) -> None:
        """Hand the next whole frame (or the framing error) to ``waiter``."""
        try:
            body = self.decoder.next_frame()
        except FramingError as exc:
            waiter.set_exception(_Garbled(str(exc)))
            return
        if self.decoder.skipped and not self._warned:
            self._warned = True
            log.warning(
                "peer sent whitespace outside MLLP frames; skipping it",
                extra={"target": self.target, "bytes": self.decoder.skipped},
            )
        if body is not None:
            waiter.set_result(body)

    def eof_received(self) -> bool:
        self._lost(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)
        if not self.gone.done():
            self.gone.set_result(None)

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if isinstance(exc, OSError):
            waiter.set_exception(exc)
        elif self.decoder.pending:
            waiter.set_exception(
                _Closed(f"closed by the peer mid-ACK ({self.decoder.pending} bytes received)")
            )
        else:
            waiter.set_exception(_Closed("closed by the peer before it sent an ACK"))


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class MllpSender:
    """One connection, connected lazily and again after any failure. Not shared
    between tasks."""

    def __init__(self, settings: MllpSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.target = f"{settings.host}:{settings.port}"
        self._ssl = ssl_context
        self._encoding = settings.encoding
        self._conn: _Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def send(self, envelope: Envelope) -> Outcome:
        payload = envelope.payload
        try:
            sent_id = raw_control_id(payload)
        except InvalidHL7 as exc:
            return Outcome.rejected(f"payload is not an HL7 v2 message: {exc}")
        if b"\x0b" in payload or b"\x1c" in payload:
            return Outcome.rejected("payload contains an MLLP framing byte (0x0B or 0x1C)")
        conn = self._conn
        if conn is not None and conn.stale:
            self._drop("the peer closed the idle connection")
            conn = None
        if conn is None:
            failure = await self._connect()
            if failure is not None:
                return failure
            conn = self._conn
            assert conn is not None
        try:
            body = await self._exchange(conn, payload)
        except TimeoutError:
            self._drop("no ACK in time")
            return Outcome.retry(
                f"no ACK from {self.target} within {self.settings.response_timeout:g}s",
                transport_error=True,
            )
        except _Garbled as exc:
            self._drop("garbled answer")
            return Outcome.retry(f"garbled answer from {self.target}: {exc}", transport_error=True)
        except (_Closed, OSError) as exc:
            self._drop("connection lost")
            return Outcome.retry(
                f"connection to {self.target} lost: {_describe(exc)}", transport_error=True
            )
        except BaseException:  # cancelled mid-exchange: the stream is in an unknown state
            self._drop("send interrupted")
            raise
        accepted = plain_accept(body, sent_id, self._encoding)
        if accepted is not None:
            return Outcome.delivered(accepted)
        try:
            ack = read_ack(body, self._encoding)
        except InvalidHL7 as exc:
            self._drop("answer is not an ACK")
            return Outcome.retry(
                f"garbled answer from {self.target}: {exc}",
                response=body.decode(self._encoding, "replace"),
                transport_error=True,
            )
        return self._judge(ack, sent_id.decode(self._encoding, "replace"))

    def _judge(self, ack: Ack, sent_id: str) -> Outcome:
        if ack.control_id != sent_id:
            self._drop("ACK for another message")
            return Outcome.retry(
                f"ACK from {self.target} acknowledges {ack.control_id!r}, not the message "
                f"sent ({sent_id!r}); connection reset to resynchronise",
                response=ack.message,
                transport_error=True,
            )
        if ack.code in ACCEPTED:
            return Outcome.delivered(ack.message)
        detail = f"{self.target} answered {ack.summary}"
        if ack.code in REJECTED or self.settings.on_application_error == "reject":
            return Outcome.rejected(detail, ack.message)
        return Outcome.retry(detail, response=ack.message)

    async def _exchange(self, conn: _Connection, payload: bytes) -> bytes:
        """Write the frame and wait for the next frame back, within
        ``response_timeout`` (one timer per send, no task or context manager)."""
        assert conn.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        conn.waiter = waiter
        timer = loop.call_later(self.settings.response_timeout, _expire, waiter)
        try:
            conn.transport.write(frame(payload))
            if conn.decoder.pending:  # an answer already buffered (early or stale)
                conn.deliver(waiter)
            return await waiter
        finally:
            timer.cancel()
            conn.waiter = None

    async def _connect(self) -> Outcome | None:
        settings = self.settings
        extra: dict[str, Any] = {}
        if self._ssl is not None:
            extra = {"ssl": self._ssl, "server_hostname": self._server_hostname()}
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(settings.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.target), settings.host, settings.port, **extra
                )
        except TimeoutError:
            return Outcome.retry(
                f"cannot connect to {self.target}: no answer within {settings.connect_timeout:g}s",
                transport_error=True,
            )
        except OSError as exc:  # includes ssl.SSLError
            return Outcome.retry(
                f"cannot connect to {self.target}: {_describe(exc)}", transport_error=True
            )
        self._conn = conn
        log.info("connected", extra={"target": self.target, "tls": self._ssl is not None})
        return None

    def _server_hostname(self) -> str:
        tls = self.settings.tls
        return (tls.server_hostname if tls else None) or self.settings.host

    def _drop(self, why: str) -> None:
        """Abort the connection at once; the next send reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
            log.info("connection dropped", extra={"target": self.target, "reason": why})

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.transport is None:
            return
        conn.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(conn.gone), CLOSE_TIMEOUT)
