"""A mail catcher for the demo and the tests: an SMTP server on a loopback port
that takes every mail it is sent and keeps each as an ``.eml`` file in a
directory (``daemon.sim.mail`` lists and shows them). Nothing is relayed.

It speaks the part of SMTP (RFC 5321) a notifier needs, over plain TCP: EHLO or
HELO, MAIL FROM, RCPT TO, DATA (dot-stuffing undone), RSET, NOOP, VRFY (252),
QUIT. STARTTLS and AUTH are not offered: point a notifier at it with
``security: none`` and no login. A mail is written to a hidden file first and
then renamed, so a reader never sees half of one; its first lines name the
envelope (``Return-Path`` and ``X-Original-To``), as a mail server's delivery
does.

In a test::

    async with MailCatcher(tmp_path / "mail") as catcher:
        ...  # send to catcher.port; catcher.received lists the files
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger("outboxd.sim.smtp")

NAME = "outboxd-sim"
MAX_LINE = 1000  # octets of a command or text line with its CRLF (RFC 5321 §4.5.3.1.4)
MAX_SIZE = 10 << 20  # bytes of one mail
MAX_RECIPIENTS = 100
IDLE_TIMEOUT = 300.0  # seconds a client may say nothing (RFC 5321 §4.5.3.2.7: 5 minutes)
_PATH = re.compile(r"(?i)^(MAIL FROM|RCPT TO):\s*<([^<>\s]*)>(?:\s+(.*))?$")


class _TooLong(Exception):
    pass


class MailCatcher:
    def __init__(self, directory: Path | str, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.directory = Path(directory)
        self.idle_timeout = idle_timeout
        self.received: list[Path] = []  # the files written, in order
        self.host = "127.0.0.1"
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count(1)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the mail catcher is not started")
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); returns the bound port."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE * 4)
        self.host = host
        self._port = self._server.sockets[0].getsockname()[1]
        return self._port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- one connection -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await _Session(self, reader, writer).run()
        except (ConnectionError, TimeoutError) as exc:
            log.debug("connection from %s: %s", peer, exc)
        except asyncio.CancelledError:
            pass  # stop(): the connection is closed below
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def keep(self, sender: str, recipients: list[str], data: bytes) -> Path:
        """Write one mail to the directory (whole, or not at all); its path."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{stamp}-{os.getpid()}-{next(self._numbers):04d}.eml"
        head = f"Return-Path: <{sender}>\r\nX-Original-To: {', '.join(recipients)}\r\n"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(head.encode() + data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.received.append(path)
        log.info(
            "mail kept",
            extra={"file": path.name, "sender": sender, "to": ",".join(recipients),
                   "bytes": len(data)},
        )  # fmt: skip
        return path


class _Session:
    """One client's conversation."""

    def __init__(
        self, catcher: MailCatcher, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.catcher = catcher
        self.reader = reader
        self.writer = writer
        self.greeted = False
        self.sender: str | None = None
        self.recipients: list[str] = []

    async def reply(self, *lines: str) -> None:
        """One reply: ``250-…`` for every line but the last, ``250 …``."""
        out = [f"{line[:3]}{'-' if i < len(lines) - 1 else ' '}{line[4:]}\r\n"
               for i, line in enumerate(lines)]  # fmt: skip
        self.writer.write("".join(out).encode())
        await self.writer.drain()

    async def line(self) -> bytes:
        try:
            data = await asyncio.wait_for(self.reader.readuntil(b"\n"), self.catcher.idle_timeout)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionError("closed by the client") from exc
        except asyncio.LimitOverrunError as exc:  # the line's start dropped, its rest follows
            await self.reader.readexactly(exc.consumed)
            raise _TooLong from exc
        if len(data) > MAX_LINE:
            raise _TooLong
        return data

    async def run(self) -> None:
        await self.reply(f"220 {NAME} ESMTP mail catcher (nothing is relayed)")
        while True:
            try:
                raw = await self.line()
            except _TooLong:
                await self.reply("500 line too long")
                return
            command = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb == "QUIT":
                await self.reply(f"221 {NAME} closing")
                return
            await self.handle(verb, command)

    async def handle(self, verb: str, command: str) -> None:
        if verb == "EHLO":
            self.greeted, self.sender, self.recipients = True, None, []
            await self.reply(f"250 {NAME}", "250 8BITMIME", f"250 SIZE {MAX_SIZE}")
        elif verb == "HELO":
            self.greeted, self.sender, self.recipients = True, None, []
            await self.reply(f"250 {NAME}")
        elif verb in ("RSET", "NOOP"):
            if verb == "RSET":
                self.sender, self.recipients = None, []
            await self.reply("250 OK")
        elif verb == "VRFY":
            await self.reply("252 cannot verify, but will take it")
        elif verb == "MAIL":
            await self.mail(command)
        elif verb == "RCPT":
            await self.rcpt(command)
        elif verb == "DATA":
            await self.data()
        elif verb in ("STARTTLS", "AUTH"):
            await self.reply(f"502 {verb} not offered: use security: none, without a login")
        else:
            await self.reply("500 command not recognised")

    async def mail(self, command: str) -> None:
        match = _PATH.match(command)
        if not self.greeted:
            await self.reply("503 say EHLO or HELO first")
        elif self.sender is not None:
            await self.reply("503 nested MAIL command")
        elif match is None or match.group(1).upper() != "MAIL FROM":
            await self.reply("501 syntax: MAIL FROM:<address>")
        else:
            self.sender = match.group(2)
            await self.reply("250 OK")

    async def rcpt(self, command: str) -> None:
        match = _PATH.match(command)
        if self.sender is None:
            await self.reply("503 need MAIL before RCPT")
        elif match is None or match.group(1).upper() != "RCPT TO" or not match.group(2):
            await self.reply("501 syntax: RCPT TO:<address>")
        elif len(self.recipients) >= MAX_RECIPIENTS:
            await self.reply("452 too many recipients")
        else:
            self.recipients.append(match.group(2))
            await self.reply("250 OK")

    async def data(self) -> None:
        if self.sender is None or not self.recipients:
            await self.reply("503 need MAIL and RCPT before DATA")
            return
        await self.reply("354 end data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        size = 0
        too_big = False
        while True:
            try:
                line = await self.line()
            except _TooLong:  # an over-long line: the mail is refused once it has all come
                too_big = True
                continue
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size > MAX_SIZE:
                too_big = True
            elif not too_big:
                lines.append(line)
        sender, recipients = self.sender, self.recipients
        self.sender, self.recipients = None, []
        if too_big:
            await self.reply(f"552 message too big or a line too long (at most {MAX_SIZE} bytes)")
            return
        path = await asyncio.to_thread(self.catcher.keep, sender, recipients, b"".join(lines))
        await self.reply(f"250 OK kept as {path.name}")
