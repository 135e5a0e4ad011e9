"""Errors more than one layer raises or answers: the store's, a role's start, an
operator's refused request."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """The database did not answer or refused the unit of work; try again later."""


class DatabaseFileError(StoreError):
    """The database the settings name is not one outboxd can use (no such file, a
    directory, not SQLite, damaged); the text names the file and what is wrong."""


class StartupError(Exception):
    """A role cannot start (a port in use, …); the text says why."""


class Refused(ValueError):
    """An operator's request refused before anything changed; the CLI and the
    API each answer it their way, by its ``kind``: ``usage`` (asked wrongly: exit
    64, 400), ``data`` (what it names cannot be done: exit 65, 400), ``missing``
    (no such thing: exit 65, 404), ``conflict`` (not in the state it is in now:
    exit 65, 409). ``field`` names what is at fault, as the request names it
    (``channel``, ``status``, ``after``), so that no face reads the text."""

    def __init__(self, text: str, kind: str = "data", field: str | None = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.field = field


class SchemaMismatch(StoreError):
    """The database's schema is not the one this outboxd expects."""
