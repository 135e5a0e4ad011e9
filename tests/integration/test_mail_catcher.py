"""The demo's mail catcher over real sockets: outboxd's smtp notifier sends to it,
each mail is kept whole as an .eml file, the mailbox command lists and shows
them; a client out of order, a mail too big or a line too long is answered with
the SMTP reply that says so and nothing half kept; and the catcher as the demo
suite starts it, from the config's notify target."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.notify.smtp import SmtpNotifier, SmtpSettings
from daemon.sim import mail
from daemon.sim.smtp import MAX_SIZE, MailCatcher
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)


def notifier(port: int, **more: object) -> SmtpNotifier:
    settings = {
        "kind": "smtp", "host": "127.0.0.1", "port": port, "security": "none",
        "from": "outboxd@demo.local", "to": ["ops@demo.local", "it@demo.local"], **more,
    }  # fmt: skip
    return SmtpNotifier(SmtpSettings.model_validate(settings))


async def test_a_notification_is_kept_whole_and_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    box = tmp_path / "mail"
    async with MailCatcher(box) as catcher:
        text = "Daily report\n\n.a line that begins with a dot\nhie: 12 sent, 0 failed\n"
        said = await notifier(catcher.port).send("outboxd: daily report", text, {})
        assert "kept as" in said
        await notifier(catcher.port).send("outboxd: alert run_failed:nightly", "it failed", {})
    files = sorted(box.glob("*.eml"))
    assert [p.name for p in files] == [p.name for p in catcher.received]
    assert not list(box.glob(".*"))  # nothing half written left behind
    head = files[0].read_bytes().split(b"\r\n")[:2]
    assert head == [b"Return-Path: <outboxd@demo.local>",
                    b"X-Original-To: ops@demo.local, it@demo.local"]  # fmt: skip

    assert mail.main(["list", "--dir", str(box)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["#", "RECEIVED", "FROM", "TO", "SUBJECT"]
    assert listing[1].startswith("1 ") and listing[1].endswith("outboxd: daily report")
    assert "outboxd@demo.local" in listing[1]
    assert listing[2].endswith("outboxd: alert run_failed:nightly")
    assert listing[3].startswith("2 mail(s) in")

    assert mail.main(["show", "1", "--dir", str(box)]) == 0
    shown = capsys.readouterr().out
    assert "From: outboxd@demo.local\nTo: ops@demo.local, it@demo.local\n" in shown
    assert "Subject: outboxd: daily report\n" in shown
    assert shown.endswith(text)  # the dot-stuffed line as it was written
    assert mail.main(["show", "--dir", str(box)]) == 0  # the latest
    assert "Subject: outboxd: alert run_failed:nightly" in capsys.readouterr().out


def test_the_mailbox_says_when_there_is_nothing_to_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert mail.main(["list", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no mail in {tmp_path}\n"
    assert mail.main(["show", "--dir", str(tmp_path)]) == mail.EX_NOINPUT
    assert f"no mail in {tmp_path}" in capsys.readouterr().err
    (tmp_path / "20240501T070003-1-0001.eml").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    assert mail.main(["show", "7", "--dir", str(tmp_path)]) == mail.EX_NOINPUT
    err = capsys.readouterr().err
    assert "no mail '7'" in err and "give 1 to 1, latest" in err


class Client:
    """A bare SMTP client: a line out, a reply back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        assert (await client.reply()).startswith("220 ")
        return client

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await self.reader.readline()).decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def say(self, line: bytes) -> str:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()


async def test_a_client_out_of_order_is_told_and_nothing_is_kept(tmp_path: Path):
    async with MailCatcher(tmp_path) as catcher:
        c = await Client.connect(catcher.port)
        try:
            assert (await c.say(b"MAIL FROM:<a@b>")).startswith("503 say EHLO")
            assert "250 SIZE" in await c.say(b"EHLO test")
            assert (await c.say(b"RCPT TO:<x@y>")).startswith("503 need MAIL")
            assert (await c.say(b"DATA")).startswith("503 need MAIL and RCPT")
            assert (await c.say(b"MAIL FROM: a@b")).startswith("501 syntax")
            assert (await c.say(b"MAIL FROM:<a@b>")).startswith("250")
            assert (await c.say(b"MAIL FROM:<a@b>")).startswith("503 nested")
            assert (await c.say(b"DATA")).startswith("503")
            assert (await c.say(b"RSET")).startswith("250")
            assert (await c.say(b"STARTTLS")).startswith("502 STARTTLS not offered")
            assert (await c.say(b"AUTH PLAIN AGFAYg==")).startswith("502 AUTH not offered")
            assert (await c.say(b"FROB")).startswith("500")
            assert (await c.say(b"VRFY x")).startswith("252")
            assert (await c.say(b"QUIT")).startswith("221")
        finally:
            await c.close()
    assert catcher.received == [] and list(tmp_path.iterdir()) == []


async def test_a_mail_too_big_is_refused_whole_and_the_session_goes_on(tmp_path: Path):
    async with MailCatcher(tmp_path) as catcher:
        c = await Client.connect(catcher.port)
        try:
            await c.say(b"HELO test")
            await c.say(b"MAIL FROM:<a@b>")
            await c.say(b"RCPT TO:<x@y>")
            assert (await c.say(b"DATA")).startswith("354")
            chunk = b"x" * 900 + b"\r\n"
            c.writer.write(chunk * (MAX_SIZE // len(chunk) + 2))
            assert (await c.say(b".")).startswith("552 message too big")
            # the next mail of the same session is taken
            await c.say(b"MAIL FROM:<a@b>")
            await c.say(b"RCPT TO:<x@y>")
            await c.say(b"DATA")
            c.writer.write(b"Subject: small\r\n\r\nfits\r\n")
            assert (await c.say(b".")).startswith("250 OK kept as")
        finally:
            await c.close()
    assert len(catcher.received) == 1
    assert catcher.received[0].read_bytes().endswith(b"Subject: small\r\n\r\nfits\r\n")


async def test_a_command_line_too_long_is_refused_and_the_connection_closed(tmp_path: Path):
    async with MailCatcher(tmp_path) as catcher:
        c = await Client.connect(catcher.port)
        try:
            assert (await c.say(b"HELO " + b"x" * 5000)).startswith("500 line too long")
            assert await c.reader.read() == b""
        finally:
            await c.close()


CONFIG = """
database: sqlite:///{tmp}/outboxd.db
notify:
  ops-mail:
    kind: smtp
    host: 127.0.0.1
    port: {port}
    security: {security}
    from: outboxd@demo.local
    to: [ops@demo.local]
"""


async def test_the_demo_starts_it_where_the_notify_target_sends(tmp_path: Path):
    port = free_port()
    config = tmp_path / "outboxd.yaml"
    config.write_text(CONFIG.format(tmp=tmp_path, port=port, security="none"))
    box = tmp_path / "mail"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.sim.run", "smtp", "-c", str(config),
        "--notify", "ops-mail", "--dir", str(box),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def sent() -> bool:
            try:
                await notifier(port, timeout=5).send("hello", "from the demo", {})
            except Exception:
                return False  # not listening yet
            return True

        await eventually(sent, "a mail taken by the catcher", timeout=60)
        assert len(list(box.glob("*.eml"))) == 1
    finally:
        proc.terminate()
        assert await proc.wait() == 0


def test_the_demo_refuses_a_target_it_cannot_stand_in_for(tmp_path: Path):
    config = tmp_path / "outboxd.yaml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config.write_text(CONFIG.format(tmp=tmp_path, port=port, security="starttls"))
    run = [sys.executable, "-m", "daemon.sim.run", "smtp", "-c", str(config)]
    starttls = subprocess.run([*run, "--notify", "ops-mail"], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert starttls.returncode == 78
    assert "notify.ops-mail: the mail catcher speaks plain SMTP" in starttls.stderr
    missing = subprocess.run([*run, "--notify", "nosuch"], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert missing.returncode == 78
    assert "no smtp notify target named 'nosuch'" in missing.stderr
