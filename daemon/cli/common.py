"""What the ``outboxd`` commands share: the settings of the file named, the
operator layer's steps run on its database, times and text from the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TypeVar

from daemon.cli.errors import EX_NOINPUT, EX_USAGE, CliError
from daemon.config.loader import load_config
from daemon.config.settings import Settings
from daemon.domain.clock import utcnow
from daemon.domain.units import parse_duration
from daemon.operator.base import Operator
from daemon.store.aio import open_async_store

T = TypeVar("T")


def settings_of(args: argparse.Namespace) -> Settings:
    return load_config(args.config)


def actor() -> str:
    """How the audit names whoever runs the command: ``cli:$USER``."""
    return f"cli:{os.environ.get('USER', 'operator')}"


def operate(
    settings: Settings, step: Callable[[Operator], Awaitable[T]], who: str | None = None
) -> T:
    """Run an operator step (``daemon.operator``) to its end on the database of
    an existing, current schema (nothing is created): the same coroutines the
    control API awaits, on an ``AsyncStore`` whose work runs on a thread."""

    async def run() -> T:
        store = open_async_store(settings.database, in_process=False)
        try:
            await store.check_schema()
            return await step(Operator(store, settings, who or actor()))
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
