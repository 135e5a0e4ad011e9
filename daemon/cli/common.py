"""What the ``outboxd`` commands share: the settings and the store of the file
named, times and text from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.cli.errors import EX_NOINPUT, EX_USAGE, CliError
from daemon.config.loader import load_config
from daemon.config.settings import Settings
from daemon.domain.clock import utcnow
from daemon.domain.units import parse_duration
from daemon.store.db import open_database
from daemon.store.migrations import require_current
from daemon.store.sync import Store

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


def read_payload(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read payload {source}: {exc.strerror}", EX_NOINPUT) from None
