"""``outboxd backup FILE``: a checked copy of the SQLite database, taken while the
suite runs (``daemon.store.backup``); PostgreSQL is pointed to ``pg_dump``."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.cli.common import settings_of
from daemon.cli.errors import EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_USAGE, CliError
from daemon.store.backup import BackupFailed, BackupRefused, backup

_REFUSED = {"backend": EX_USAGE, "exists": EX_CANTCREAT, "target": EX_CANTCREAT}
_FAILED = {"write": EX_IOERR, "read": EX_DATAERR, "verify": EX_DATAERR}


def cmd_backup(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    try:
        done = backup(settings.database, Path(args.file), force=args.force)
    except BackupRefused as exc:
        raise CliError(str(exc), _REFUSED[exc.reason]) from None
    except BackupFailed as exc:
        raise CliError(f"backup failed, nothing written: {exc}", _FAILED[exc.reason]) from None
    messages = f"{done.messages} message{'' if done.messages == 1 else 's'}"
    print(
        f"backed up to {done.path}: schema version {done.version}, {messages}, "
        f"{_size(done.size)}, integrity checked, in {done.seconds:.1f}s"
    )
    return 0


def _size(size: int) -> str:
    value, unit = float(size), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
