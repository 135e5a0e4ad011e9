"""What the ``outboxd`` commands share: the settings of the file named, the
operator layer's steps run on its database, times and text from the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TypeVar

from daemon.cli.errors import EX_NOINPUT, EX_USAGE, CliError
from daemon.config.loader import load_config
from daemon.config.settings import Settings
from daemon.domain.clock import utcnow
from daemon.domain.limits import text_problem
from daemon.domain.units import parse_duration
from daemon.operator.base import Operator
from daemon.store.address import backend_of
from daemon.store.aio import open_async_store
from daemon.store.drivers import only_for

T = TypeVar("T")


def settings_of(args: argparse.Namespace) -> Settings:
    return load_config(args.config)


def account() -> str:
    """Who runs the command: ``$USER`` (or ``$LOGNAME``) as a login shell sets it,
    else the name of the process's user id (a root shell, a cron job, a unit
    without one set), else ``uid N``; ``via sudo by NAME`` when sudo ran it."""
    uid = os.getuid()
    name = next((v for v in (os.environ.get("USER"), os.environ.get("LOGNAME")) if _plain(v)), None)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # a user id with no account (a container's)
            name = f"uid {uid}"
    sudo = os.environ.get("SUDO_USER")
    if _plain(sudo) and sudo != name:
        name += f" via sudo by {sudo}"
    return name


def _plain(value: str | None) -> bool:
    return value is not None and text_problem(value, 32) is None


def actor() -> str:
    """How the audit names whoever runs the command: ``cli:`` and the account."""
    return f"cli:{account()}"


def drivers_for(settings: Settings) -> None:
    """Before the store is imported: this process serves the file's database alone,
    so the drivers of the other backend stay unloaded (``store.drivers.only_for``)."""
    only_for(backend_of(settings.database.url.get_secret_value()))


def operate(
    settings: Settings,
    step: Callable[[Operator], Awaitable[T]],
    who: str | None = None,
    reason: str | None = None,
) -> T:
    """Run an operator step (``daemon.operator``) to its end on the database of
    an existing, current schema (nothing is created): the same coroutines the
    control API awaits, on an ``AsyncStore`` whose work runs on a thread.
    ``reason``: what ``--reason`` said, for the audit."""

    async def run() -> T:
        drivers_for(settings)
        store = open_async_store(settings.database, in_process=False)
        try:
            op = Operator(store, settings, who or actor()).giving(reason, "--reason")
            await store.check_schema()
            return await step(op)
        finally:
            await store.aclose()

    return asyncio.run(run())


def parse_time(text: str, tz: tzinfo, option: str = "--since") -> datetime:
    """``2026-11-23T08:00`` (in the configured zone unless it has an offset), or a
    duration meaning that long ago (``2h``)."""
    try:
        return utcnow() - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
        value = value.replace(tzinfo=tz) if value.tzinfo is None else value
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CliError(
            f"{option}: invalid time {text!r}: use ISO 8601 (2026-11-23T08:00) or an age "
            "such as 2h",
            EX_USAGE,
        ) from None


def read_input(source: str, what: str = "payload") -> bytes:
    """The bytes of FILE, or of standard input for ``-``."""
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {source}: {exc.strerror}", EX_NOINPUT) from None


def read_payload(source: str) -> bytes:
    return read_input(source, "payload")
