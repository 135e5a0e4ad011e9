"""A copy of the SQLite database, taken while the suite runs: ``outboxd backup FILE``.

SQLite's online backup API copies the database page by page inside one read
transaction: in WAL mode writers go on meanwhile, and the copy is the database as
it was when the copy began, every transaction in it whole or not at all. The copy
is written to a private temporary file next to FILE (0600, as the database is:
``daemon.domain.files``), switched out of WAL so that it is one self-contained
file, checked (``PRAGMA integrity_check``, the schema version it holds), flushed to
disk, and only then given FILE's name: FILE is never a half-written copy. An
existing FILE is kept unless ``force``.

PostgreSQL is backed up with its own tools (``pg_dump -Fc``, or the server's base
backups and WAL archiving for point-in-time recovery): ``backup`` refuses it with
the ``pg_dump`` command line for the database configured (no password in it).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from daemon.config.database import DatabaseSettings
from daemon.domain.errors import SchemaMismatch, StoreError, StoreUnavailable
from daemon.domain.files import create_private
from daemon.store.address import is_postgres_url, postgres_params
from daemon.store.db import open_database, unavailable_on_error
from daemon.store.migrations import VERSION_TABLE, current_version

# what sits next to a SQLite database and belongs to it: a backup must not land there
_COMPANIONS = ("", "-wal", "-shm", "-journal")


class BackupRefused(StoreError):
    """A backup not attempted, nothing written; ``reason``: ``exists`` (FILE is
    there and ``force`` was not given), ``target`` (FILE cannot be one: the
    database itself, a directory), ``backend`` (PostgreSQL: use pg_dump)."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text)
        self.reason = reason


class BackupFailed(StoreError):
    """A copy that was begun and did not complete or verify; nothing is left of it.
    ``reason``: ``write`` (FILE or its temporary file could not be written),
    ``read`` (the database could not be read whole), ``verify`` (the copy failed its
    check)."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True)
class Backup:
    """A verified copy: where, its size in bytes, the schema version it holds,
    how many messages, and how long it took."""

    path: Path
    size: int
    version: int
    messages: int
    seconds: float


def backup(settings: DatabaseSettings, target: Path, force: bool = False) -> Backup:
    """Copy the database ``settings`` names to ``target`` (see the module)."""
    url = settings.url.get_secret_value()
    if is_postgres_url(url):
        raise BackupRefused(
            "outboxd backup copies a SQLite database; back up PostgreSQL with its own "
            f"tools: {pg_dump_command(settings, target)} (restore with pg_restore; "
            "see docs/backup.md)",
            "backend",
        )
    started = time.monotonic()
    db = open_database(settings, create=False)  # a missing or foreign file is named
    try:
        source = Path(str(db.database))
        _check_target(source, target, force)
        with unavailable_on_error(db):
            version = current_version(db)
            if version == 0:
                raise SchemaMismatch(
                    f"{source} holds no outboxd schema (version 0): nothing to back up"
                )
            temporary = _copy(db.connection(), target)
    finally:
        db.close()
    try:
        messages = _verify(temporary, source, version)
        _sync(temporary)
        _put_in_place(temporary, target, force)
    finally:
        _remove(temporary)
    _sync_directory(target.parent)
    return Backup(target, target.stat().st_size, version, messages, time.monotonic() - started)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_target(source: Path, target: Path, force: bool) -> None:
    for suffix in _COMPANIONS:
        companion = source.with_name(source.name + suffix)
        if target.absolute() == companion.absolute() or _same_file(target, companion):
            raise BackupRefused(
                f"{target} is the database {source} or one of its files: name another file",
                "target",
            )
    if target.is_dir():
        raise BackupRefused(f"{target} is a directory: name the file to write", "target")
    if target.exists() or target.is_symlink():
        if not force:
            raise BackupRefused(
                f"{target} exists: give --force to replace it, or name another file", "exists"
            )
        if not target.is_file():
            raise BackupRefused(f"{target} is not a regular file: not replaced", "target")


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def _copy(source: sqlite3.Connection, target: Path) -> Path:
    """The database copied into a new private file next to ``target``: its path."""
    temporary = _temporary(target)
    try:
        os.close(create_private(temporary))  # 0600, its missing directories 0700
    except OSError as exc:
        raise BackupFailed(
            f"cannot write next to {target}: {exc.strerror or exc}", "write"
        ) from None
    try:
        copy = sqlite3.connect(temporary)
        try:
            source.backup(copy)  # every page in one step: one consistent snapshot
            # one self-contained file: no -wal beside it to lose when it is copied
            copy.execute("PRAGMA journal_mode = DELETE").fetchone()
        finally:
            copy.close()
    except BaseException as exc:
        _remove(temporary)
        if isinstance(exc, sqlite3.DatabaseError):
            raise _copy_error(exc, target) from None
        raise
    return temporary


def _copy_error(exc: sqlite3.DatabaseError, target: Path) -> StoreError:
    """What a failed copy means: the database busy, ``target`` not writable, or the
    database not readable whole."""
    text = _one_line(str(exc))
    if any(w in text for w in ("locked", "busy")):
        return StoreUnavailable(f"database busy, no backup taken: {text}")
    if any(w in text for w in ("disk", "full", "readonly", "I/O", "unable to open")):
        return BackupFailed(f"cannot write {target}: {text}", "write")
    return BackupFailed(f"the database could not be read whole: {text}", "read")


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _verify(path: Path, source: Path, version: int) -> int:
    """``PRAGMA integrity_check`` and the schema version of the copy at ``path``;
    how many messages it holds."""
    try:
        copy = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            problems = [row[0] for row in copy.execute("PRAGMA integrity_check(20)")]
            if problems != ["ok"]:
                raise BackupFailed(
                    f"the copy failed its integrity check ({_one_line('; '.join(problems))}): "
                    f"the database itself may be damaged; check it with: sqlite3 "
                    f"{shlex.quote(str(source))} 'PRAGMA integrity_check'",
                    "verify",
                )
            held = copy.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()[0]
            if held != version:
                raise BackupFailed(
                    f"the copy holds schema version {held}, the database was at {version} "
                    "(did a migration run meanwhile?): take the backup again",
                    "verify",
                )
            messages: int = copy.execute("SELECT COUNT(*) FROM outboxd_message").fetchone()[0]
        finally:
            copy.close()
    except sqlite3.DatabaseError as exc:
        raise BackupFailed(f"the copy cannot be read back: {exc}", "verify") from None
    return messages


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _put_in_place(temporary: Path, target: Path, force: bool) -> None:
    """Give the verified copy its name: replacing ``target`` only with ``force``,
    else never a file that appeared meanwhile."""
    try:
        if force:
            os.replace(temporary, target)
            return
        try:
            os.link(temporary, target)  # fails if target exists: no overwrite race
        except FileExistsError:
            raise BackupRefused(
                f"{target} appeared while the copy was made: not replaced (give --force to "
                "replace it)",
                "exists",
            ) from None
        except OSError:  # a file system without hard links
            if target.exists():
                raise BackupRefused(
                    f"{target} exists: give --force to replace it", "exists"
                ) from None
            os.rename(temporary, target)
    except OSError as exc:
        raise BackupFailed(f"cannot write {target}: {exc.strerror or exc}", "write") from None


def _remove(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()


def pg_dump_command(settings: DatabaseSettings, target: Path) -> str:
    """The ``pg_dump`` command line that dumps the database ``settings`` names to
    ``target`` in the custom format ``pg_restore`` reads; the password is left to
    ``~/.pgpass`` or ``PGPASSWORD``, never printed."""
    url = settings.url.get_secret_value()
    dbname, params = postgres_params(url, settings)
    words = ["pg_dump", "-Fc"]
    for option, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            words += [option, str(params[key])]
    options = dict(parse_qsl(urlsplit(url).query)).get("options", "")
    for word in options.split():
        if word.startswith("-csearch_path="):  # outboxd's tables in a schema of their own
            for schema in word.partition("=")[2].split(","):
                if schema.strip():
                    words += ["-n", schema.strip()]
    words += ["-f", str(target), dbname or "postgres"]
    return shlex.join(words)
