"""The database drivers a store worker leaves unloaded.

peewee imports, at its own import, every driver it finds installed: psycopg and
psycopg2 (PostgreSQL), PyMySQL or MySQLdb (MySQL). outboxd's store runs on SQLite
or on PostgreSQL through psycopg 3, and a store worker serves one database; told
its backend when it starts (``daemon.store.spawn``), it makes the drivers that
backend does not use unimportable before peewee is imported (``sys.modules[name]
= None``: the import system's own mark of a module that cannot be imported), so a
worker for SQLite starts without psycopg (~75 ms of its start) and none loads
PyMySQL (~20 ms). A worker told nothing hides nothing.
"""

from __future__ import annotations

import sys

BACKENDS = ("sqlite", "postgresql")
_UNUSED: dict[str, tuple[str, ...]] = {
    "sqlite": ("psycopg", "psycopg2", "psycopg2cffi", "pymysql", "MySQLdb"),
    "postgresql": ("psycopg2", "psycopg2cffi", "pymysql", "MySQLdb"),
}


def hide_unused(backend: str | None) -> None:
    """Make the drivers ``backend`` does not use unimportable in this process
    (before peewee is imported); nothing for no backend or one not known here."""
    if "peewee" in sys.modules:
        raise RuntimeError("peewee is imported already: its drivers are loaded")
    for name in _UNUSED.get(backend or "", ()):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
