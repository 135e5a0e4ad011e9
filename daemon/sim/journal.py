"""A simulator's state in a file: an append-only journal of JSON lines.

The first line names the journal (``{"journal": KIND, "version": 1}``); each further
line is one record, a JSON object. ``append`` writes a record with one ``write`` to
the operating system, so what was appended survives the process being killed.
``read`` gives the records back; ``rewrite`` replaces the whole file with a shorter
list (written to ``PATH.tmp`` in the same directory, then renamed over the journal)
and opens it for appending.

A last line cut off by a kill during its write is dropped with a warning. Anything
else that does not read as a journal raises ``JournalError``, whose text names the
file and, where there is one, the line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1


class JournalError(Exception):
    """A state file that cannot be read, written, or understood."""


class Journal:
    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._fd: int | None = None
        self._size = 0  # bytes known to be in the file, all lines complete

    def read(self) -> list[tuple[int, dict[str, Any]]]:
        """The records with their line numbers; none for a missing or empty file
        (a missing file's directory is made)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(f"{self.path}: cannot make its directory ({exc})") from None
            return []
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read ({exc})") from None
        if not data:
            return []
        lines = data.split(b"\n")
        complete = lines[-1] == b""  # the file ends with a newline
        if complete:
            lines.pop()
        header = _object(lines[0])
        if header is None or header.get("journal") != self.kind:
            raise JournalError(f"{self.path}:1: not a journal of {self.kind}")
        if header.get("version") != VERSION:
            raise JournalError(
                f"{self.path}:1: journal version {header.get('version')!r}, expected {VERSION}"
            )
        records: list[tuple[int, dict[str, Any]]] = []
        for number, line in enumerate(lines[1:], start=2):
            record = _object(line)
            if record is not None:
                records.append((number, record))
            elif number == len(lines) and not complete:
                log.warning(
                    "dropped the journal's cut-off last line",
                    extra={"path": str(self.path), "line": number, "length": len(line)},
                )
            else:
                raise JournalError(f"{self.path}:{number}: not a JSON object")
        return records

    def error(self, line: int, problem: str) -> JournalError:
        """A ``JournalError`` about a record ``read`` gave."""
        return JournalError(f"{self.path}:{line}: {problem}")

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Make the file hold ``records`` alone, then keep it open for ``append``."""
        self.close()
        header = {"journal": self.kind, "version": VERSION}
        data = b"".join(_line(r) for r in (header, *records))
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())  # the rename never shows a file still unwritten
            os.replace(temporary, self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise JournalError(f"{self.path}: cannot write ({exc})") from None
        self._size = len(data)

    def append(self, record: dict[str, Any]) -> None:
        """Add ``record`` as a line; on failure the file is left as it was."""
        if self._fd is None:
            raise JournalError(f"{self.path}: not open (rewrite it first)")
        data = _line(record)
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            with contextlib.suppress(OSError):  # no half line for the next to follow
                os.ftruncate(self._fd, self._size)
            raise JournalError(f"{self.path}: cannot append ({exc})") from None
        self._size += len(data)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None
