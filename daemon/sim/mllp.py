"""An MLLP receiver for the tests and the demo: keeps what it receives and
answers as its rules say, faults included.

In a test::

    async with MllpSimulator([Rule(action="ack", code="AR", match=rb"PID\\|1\\|\\|X")]) as sim:
        ...  # send to sim.port; inspect sim.received; change sim.rules

Each message is answered by the first rule that matches it (and has ``times``
left), else with AA. ``canned=True`` is the benchmark mode: every message gets
one precomputed AA, only MSA-2 filled in per message, nothing is kept but a
count, and rules are ignored.

As a process (the demo's MLLP peer)::

    python -m daemon.sim.mllp --host 127.0.0.1 --port 2575 [--canned] [--reject REGEX] ...

Logs to stderr; exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import ssl
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal, cast

from daemon.domain.logs import setup_logging
from daemon.hl7 import (
    ACK_CODES,
    FrameDecoder,
    FramingError,
    InvalidHL7,
    build_ack,
    frame,
    raw_control_id,
)
from daemon.runtime import eventloop
from daemon.sim import fail
from daemon.sim.fail import FailSwitch

log = logging.getLogger("outboxd.sim.mllp")

MAX_MESSAGE_BYTES = 64 << 20
READ_CHUNK = 1 << 16
GARBAGE = frame(b"this is not an HL7 acknowledgment")

Action = Literal["ack", "drop", "no_ack", "garbage", "wrong_id", "close_mid_ack"]
ACTIONS: tuple[Action, ...] = ("ack", "drop", "no_ack", "garbage", "wrong_id", "close_mid_ack")


@dataclass
class Rule:
    """How to answer the messages ``match`` finds (a regex searched in the raw
    message; None matches all). After ``delay`` seconds:

    - ``ack``: an ACK with ``code`` and ``text`` (MSA-3);
    - ``drop``: close the connection without answering;
    - ``no_ack``: never answer (the connection stays open);
    - ``garbage``: send the bytes ``garbage`` as they are;
    - ``wrong_id``: an ACK with ``code`` whose MSA-2 is not the message's MSH-10;
    - ``close_mid_ack``: send the first half of the ACK frame, then close.

    ``times`` limits the rule to that many messages; then it no longer matches.
    """

    action: Action = "ack"
    code: str = "AA"
    text: str = ""
    match: bytes | None = None
    delay: float = 0.0
    times: int | None = None
    garbage: bytes = GARBAGE
    _pattern: re.Pattern[bytes] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {', '.join(ACTIONS)}")
        if self.code not in ACK_CODES:
            raise ValueError(f"unknown acknowledgment code {self.code!r}")
        self._pattern = re.compile(self.match) if self.match is not None else None

    def take(self, message: bytes) -> bool:
        """Whether this rule answers ``message`` (using up one of its ``times``)."""
        if self.times is not None and self.times <= 0:
            return False
        if self._pattern is not None and not self._pattern.search(message):
            return False
        if self.times is not None:
            self.times -= 1
        return True


DEFAULT_RULE = Rule()


@dataclass(frozen=True)
class Received:
    payload: bytes  # the frame's content, byte for byte
    control_id: str | None  # its MSH-10, None if it has none
    connection: int  # which connection it came on, counting from 1
    at: float  # time.monotonic() when it arrived


def _canned_parts(encoding: str) -> tuple[bytes, bytes]:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    head = f"MSH|^~\\&|SIM|SIM|OUTBOXD|OUTBOXD|{stamp}||ACK|SIMACK|P|2.5\rMSA|AA|"
    return b"\x0b" + head.encode(encoding), b"\r\x1c\r"


def _with_wrong_id(ack: bytes) -> bytes:
    """The same ACK acknowledging another message (MSA-2 changed)."""
    sep = ack[3:4]
    header, msa, *rest = ack.split(b"\r")
    fields = msa.split(sep)
    fields[2] = b"NOT-" + fields[2]
    return b"\r".join([header, sep.join(fields), *rest])


class _CannedAnswers(asyncio.Protocol):
    """The benchmark mode's connection: frames in, the canned AA out, straight from
    the transport's callbacks (no stream, no task per connection)."""

    def __init__(self, sim: MllpSimulator) -> None:
        self.sim = sim
        self.decoder = FrameDecoder(MAX_MESSAGE_BYTES)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.sim.connections += 1
        self.sim._transports.add(self.transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        body = self.decoder.whole(data)
        if body is not None:
            self._answer(body)
            return
        self.decoder.feed(data)
        try:
            while (message := self.decoder.next_frame()) is not None:
                self._answer(message)
        except FramingError as exc:
            log.warning("canned connection: %s; closing it", exc)
            self.transport.close()

    def _answer(self, message: bytes) -> None:
        assert self.transport is not None
        sim = self.sim
        sim.received_count += 1
        sim._arrived.set()
        try:
            cid = raw_control_id(message)
        except InvalidHL7:
            cid = b""
        self.transport.write(sim._canned_head + cid + sim._canned_tail)

    def pause_writing(self) -> None:  # a client sending without reading: stop reading too
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.sim._transports.discard(self.transport)


class MllpSimulator:
    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        canned: bool = False,
        encoding: str = "utf-8",
        ssl_context: ssl.SSLContext | None = None,
        keep: int | None = None,
        log_received: bool = False,
    ) -> None:
        self.rules: list[Rule] = list(rules)
        self.log_received = log_received  # one log line per message: what a test of a process reads
        self.canned = canned
        self.encoding = encoding
        self.received: deque[Received] = deque(maxlen=keep)
        self.received_count = 0
        self.connections = 0  # accepted so far
        self.host = "127.0.0.1"
        self._ssl = ssl_context
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._transports: set[asyncio.Transport] = set()  # canned connections
        self._arrived = asyncio.Event()
        self._canned_head, self._canned_tail = _canned_parts(encoding)
        self.fail_switch = FailSwitch(None)  # the demo's switch: AE to its share (not canned)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def control_ids(self) -> list[str | None]:
        return [r.control_id for r in self.received]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); returns the bound port."""
        if self.canned:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _CannedAnswers(self), host, port, ssl=self._ssl
            )
        else:
            self._server = await asyncio.start_server(
                self._serve, host, port, ssl=self._ssl, limit=MAX_MESSAGE_BYTES
            )
        self.host = host
        self._port = self._server.sockets[0].getsockname()[1]
        return self._port

    async def stop(self) -> None:
        """Stop listening and abort every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for transport in list(self._transports):
            transport.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` messages have arrived in all."""
        async with asyncio.timeout(timeout):
            while self.received_count < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def __aenter__(self) -> MllpSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        number = self.connections
        peer = writer.get_extra_info("peername")
        log.debug("connection %d from %s", number, peer)
        decoder = FrameDecoder(MAX_MESSAGE_BYTES)
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                decoder.feed(data)
                while (message := decoder.next_frame()) is not None:
                    if not await self._handle(message, number, writer):
                        return
        except FramingError as exc:
            log.warning("connection %d from %s: %s; closing it", number, peer, exc)
        except (ConnectionError, ssl.SSLError) as exc:
            log.debug("connection %d from %s: %s", number, peer, exc)
        except asyncio.CancelledError:
            # Only stop() cancels a handler. Ending normally keeps asyncio's
            # stream callback (Python 3.11) from logging the cancellation as an error.
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()  # a graceful close: what was written (half an ACK, say) still goes out

    async def _handle(self, message: bytes, number: int, writer: asyncio.StreamWriter) -> bool:
        """Answer one message; False when the connection is to be closed."""
        self.received_count += 1
        self._arrived.set()
        try:
            cid_text: str | None = raw_control_id(message).decode(self.encoding, "replace")
        except InvalidHL7:
            cid_text = None
        self.received.append(Received(message, cid_text, number, time.monotonic()))
        if self.log_received:
            log.info(
                "received control_id=%s connection=%d bytes=%d", cid_text, number, len(message)
            )
        rule = next((r for r in self.rules if r.take(message)), DEFAULT_RULE)
        if self.fail_switch.fails():
            rule = Rule(code="AE", text=self.fail_switch.reason, delay=rule.delay)
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.action == "no_ack":
            return True
        if rule.action == "drop":
            return False
        if rule.action == "garbage":
            writer.write(rule.garbage)
        else:
            try:
                ack = build_ack(message, rule.code, rule.text, self.encoding)
            except InvalidHL7 as exc:
                ack = self._refusal(str(exc))
            if rule.action == "wrong_id":
                ack = _with_wrong_id(ack)
            framed = frame(ack)
            if rule.action == "close_mid_ack":
                writer.write(framed[: len(framed) // 2])
                await writer.drain()
                return False
            writer.write(framed)
        await writer.drain()
        return True

    def _refusal(self, why: str) -> bytes:
        """An AR for something that is not HL7 (MSA-2 empty: there is no MSH-10)."""
        stub = b"MSH|^~\\&|||||||UNKNOWN||P|2.5\r"
        return build_ack(stub, "AR", f"not an HL7 message: {why}", self.encoding)


def _server_ssl(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim.mllp", description="An MLLP receiver that ACKs what it gets."
    )
    eventloop.add_argument(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2575, help="0 picks a free port")
    parser.add_argument("--canned", action="store_true", help="benchmark mode: AA to everything")
    parser.add_argument(
        "--reject", action="append", default=[], metavar="REGEX", help="answer AR when it matches"
    )
    parser.add_argument(
        "--error", action="append", default=[], metavar="REGEX", help="answer AE when it matches"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--encoding", default="utf-8")
    fail.add_argument(parser)
    parser.add_argument("--tls-cert", help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--keep", type=int, default=1000, help="messages kept in memory")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument(
        "--log-received", action="store_true", help="log each message's MSH-10 and connection"
    )
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def _rules(args: argparse.Namespace) -> list[Rule]:
    rules = [
        Rule(code="AR", match=p.encode(), text="rejected by the simulator") for p in args.reject
    ]
    rules += [
        Rule(code="AE", match=p.encode(), text="error from the simulator") for p in args.error
    ]
    if args.delay:
        for rule in rules:
            rule.delay = args.delay
        rules.append(Rule(delay=args.delay))
    return rules


async def _serve(args: argparse.Namespace) -> int:
    context = _server_ssl(args.tls_cert, args.tls_key) if args.tls_cert else None
    sim = MllpSimulator(
        _rules(args),
        canned=args.canned,
        encoding=args.encoding,
        ssl_context=context,
        keep=args.keep,
        log_received=args.log_received,
    )
    sim.fail_switch = FailSwitch(args.fail_switch, "sim-mllp")
    try:
        port = await sim.start(args.host, args.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    mode = "canned AA" if args.canned else f"{len(sim.rules)} rule(s)"
    log.info("listening on %s:%d (%s, tls %s)", args.host, port, mode, "on" if context else "off")
    await stop.wait()
    await sim.stop()
    log.info("stopped after %d message(s) on %d connection(s)", sim.received_count, sim.connections)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    setup_logging(args.log_level, "text", "sim-mllp")
    with contextlib.suppress(KeyboardInterrupt):
        return eventloop.run(_serve(args), args.event_loop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
