"""What every ``outboxd`` command shares: exit codes, the one-line error, the
settings and the store of the file named, times and text from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.config.loader import load_config
from daemon.config.settings import Settings
from daemon.domain.clock import utcnow
from daemon.domain.units import parse_duration
from daemon.store.db import open_database
from daemon.store.migrations import require_current
from daemon.store.sync import Store

Command = Callable[[argparse.Namespace], int]
Add = Callable[[str, Command, str], argparse.ArgumentParser]


def subcommands(
    parser: argparse.ArgumentParser, common: argparse.ArgumentParser, dest: str, metavar: str
) -> Add:
    """The function that adds a subcommand (its name, what runs it, its help) under
    ``parser``, each taking ``common``'s options."""
    sub = parser.add_subparsers(dest=dest, required=True, metavar=metavar)

    def add(name: str, func: Command, text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=text, description=text)
        cmd.set_defaults(func=func)
        return cmd

    return add


EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
MAX_ID = 2**63 - 1  # the largest id a message can have


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- helpers ------------------------------------------------------------------------


def settings_of(args: argparse.Namespace) -> Settings:
    return load_config(args.config)


def open_store(settings: Settings) -> Store:
    """The store of an existing, current database (nothing is created)."""
    db = open_database(settings.database, create=False)
    try:
        require_current(db)
    except BaseException:
        db.close()
        raise
    return Store(db)


def parse_time(text: str, tz: ZoneInfo, option: str = "--since") -> datetime:
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


def check_text(args: argparse.Namespace) -> None:
    """Every text argument a message or a lookup uses must be UTF-8 (a shell can
    pass any bytes; they cannot be stored, compared or printed as they are)."""
    for name, value in vars(args).items():
        if name in ("config", "payload") or not isinstance(value, str | list):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    option = name if name in ("kodebooking",) else f"--{name.replace('_', '-')}"
                    raise CliError(f"{option}: not valid UTF-8 text", EX_DATAERR) from None


def read_payload(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read payload {source}: {exc.strerror}", EX_NOINPUT) from None
