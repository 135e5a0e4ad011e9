"""Who may read what outboxd writes: the account it runs as, alone. The SQLite
database (with its ``-wal`` and ``-shm``), the export job's files and the logs hold
payloads (patient data) and tokens' names; they are made owner-only whatever the
site's umask: files 0600, directories 0700. The command (``outboxd``, every role
included) runs with a umask that takes group and other access away from anything
else it creates (``private_umask``); supervisord does the same for its logs
(``umask=077`` in supervisord.conf)."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE = 0o600  # rw for the owner
PRIVATE_DIR = 0o700  # rwx for the owner
PRIVATE_UMASK = 0o077  # what a new file or directory never gets: any group or other access


def private_umask() -> int:
    """Take group and other access away from what the process creates from now on
    (a stricter umask stays as it is); the umask before."""
    before = os.umask(PRIVATE_UMASK)
    os.umask(before | PRIVATE_UMASK)
    return before


def make_private_dirs(directory: Path) -> None:
    """``directory`` and any of its parents missing, each created 0700."""
    for missing in reversed([directory, *directory.parents]):
        if not missing.exists():
            missing.mkdir(mode=PRIVATE_DIR, exist_ok=True)


def create_private(path: Path) -> int:
    """A new file at ``path`` (it must not exist), 0600, open for writing: its
    descriptor. Its missing directories are made 0700."""
    make_private_dirs(path.parent)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
