"""The demo's mail catcher and its mailbox (``var/mail``: one ``.eml`` file a
mail, which any mail client opens too)::

    python -m daemon.sim.mail list           # the mails, oldest first, numbered
    python -m daemon.sim.mail show           # the newest one: its headers and text
    python -m daemon.sim.mail show 2         # the second in the list (or a file's name)
    python -m daemon.sim.mail serve --port 2525 --dir var/mail   # the catcher itself

In the demo suite the catcher runs as ``demo:sim-mail`` (started through
``daemon.sim.run smtp``, on the port of the config's ``notify.ops-mail``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from daemon.domain.logs import setup_logging
from daemon.runtime import eventloop

DEFAULT_DIR = Path("var/mail")
EX_NOINPUT = 66
_WIDTH = {"n": 3, "received": 20, "from": 24, "to": 24}


@dataclass(frozen=True)
class Mail:
    path: Path
    message: EmailMessage

    @property
    def received(self) -> str:
        """When the catcher kept it (its file name begins so), as 2024-05-01 07:00:03Z."""
        stamp = self.path.name.split("-", 1)[0]
        if len(stamp) != 15:
            return "?"
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:]}Z"

    def header(self, name: str) -> str:
        return " ".join(str(self.message.get(name, "")).split())

    def text(self) -> str:
        """The plain text body (the first text part of a multipart mail)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return content if isinstance(content, str) else repr(content)


def mails(directory: Path) -> list[Mail]:
    """The mails in ``directory``, oldest first (hidden files, half written, left out)."""
    found = sorted(p for p in directory.glob("*.eml") if not p.name.startswith("."))
    out = []
    for path in found:
        with path.open("rb") as data:
            message = email.message_from_binary_file(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        out.append(Mail(path, message))
    return out


def _cell(text: str, width: int) -> str:
    return (text if len(text) <= width else text[: width - 1] + "…").ljust(width)


def cmd_list(directory: Path) -> int:
    found = mails(directory)
    if not found:
        print(f"no mail in {directory}")
        return 0
    print(
        f"{'#':<{_WIDTH['n']}} {'RECEIVED':<{_WIDTH['received']}} "
        f"{'FROM':<{_WIDTH['from']}} {'TO':<{_WIDTH['to']}} SUBJECT"
    )
    for n, mail in enumerate(found, 1):
        print(
            f"{n:<{_WIDTH['n']}} {_cell(mail.received, _WIDTH['received'])} "
            f"{_cell(mail.header('From'), _WIDTH['from'])} "
            f"{_cell(mail.header('To'), _WIDTH['to'])} {mail.header('Subject')}"
        )
    print(f"{len(found)} mail(s) in {directory}; python -m daemon.sim.mail show N for one")
    return 0


def cmd_show(directory: Path, which: str) -> int:
    found = mails(directory)
    if not found:
        print(f"no mail in {directory}", file=sys.stderr)
        return EX_NOINPUT
    mail = _pick(found, which)
    if mail is None:
        print(
            f"no mail {which!r} in {directory}: give 1 to {len(found)}, latest, or a file's name",
            file=sys.stderr,
        )
        return EX_NOINPUT
    for name in ("From", "To", "Subject", "Date"):
        print(f"{name}: {mail.header(name)}")
    print(f"File: {mail.path}")
    print()
    print(mail.text().rstrip("\n"))
    return 0


def _pick(found: list[Mail], which: str) -> Mail | None:
    if which == "latest":
        return found[-1]
    if which.isdigit():
        n = int(which)
        return found[n - 1] if 1 <= n <= len(found) else None
    return next((m for m in found if which in (m.path.name, str(m.path))), None)


async def _serve(args: argparse.Namespace) -> int:
    import logging

    from daemon.sim.smtp import MailCatcher

    log = logging.getLogger("outboxd.sim.mail")
    catcher = MailCatcher(args.dir)
    try:
        port = await catcher.start(args.host, args.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("listening", extra={"host": args.host, "port": port, "dir": str(args.dir)})
    await stop.wait()
    await catcher.stop()
    log.info("stopped", extra={"kept": len(catcher.received)})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim.mail", description="The demo's mail catcher and its mailbox."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help=f"the mailbox (default: {DEFAULT_DIR})"
    )
    sub.add_parser("list", parents=[common], help="the mails, oldest first")
    show = sub.add_parser("show", parents=[common], help="one mail: its headers and text")
    show.add_argument("which", nargs="?", default="latest", help="N, latest or a file's name")
    serve = sub.add_parser("serve", parents=[common], help="catch mail over SMTP")
    eventloop.add_argument(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=2525, help="0 picks a free port")
    args = parser.parse_args(argv)
    if args.action == "list":
        return cmd_list(args.dir)
    if args.action == "show":
        return cmd_show(args.dir, args.which)
    setup_logging("INFO", "text", "sim-mail")
    with contextlib.suppress(KeyboardInterrupt):
        return eventloop.run(_serve(args), args.event_loop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
