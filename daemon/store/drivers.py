"""The database drivers a store worker, and a process serving one database, leave
unloaded.

peewee imports, at its own import, every driver it finds installed: psycopg and
psycopg2 (PostgreSQL), PyMySQL or MySQLdb (MySQL). outboxd's store runs on SQLite
or on PostgreSQL through psycopg 3, and a store worker serves one database; told
its backend when it starts (``daemon.store.spawn``), it makes the drivers that
backend does not use unimportable before peewee is imported (``sys.modules[name]
= None``: the import system's own mark of a module that cannot be imported), so a
worker for SQLite starts without psycopg (~75 ms of its start) and none loads
PyMySQL (~20 ms). A worker told nothing hides nothing.

An ``outboxd`` command or a role on a thread store serves one database as well, but
may read MariaDB beside it (a Khanza source, with PyMySQL): ``only_for`` hides the
PostgreSQL drivers alone, from a process whose store is on SQLite (~95 ms of each
command's start), before the store is first imported.
"""

from __future__ import annotations

import sys

BACKENDS = ("sqlite", "postgresql")
# the PostgreSQL drivers a store on the backend does not use; a store worker leaves
# the MySQL ones unloaded too, a process that may read MariaDB (PyMySQL) does not
_POSTGRES_UNUSED: dict[str, tuple[str, ...]] = {
    "sqlite": ("psycopg", "psycopg2", "psycopg2cffi"),
    "postgresql": ("psycopg2", "psycopg2cffi"),
}
_MYSQL = ("pymysql", "MySQLdb")


def _leave_unloaded(names: tuple[str, ...]) -> None:
    for name in names:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def hide_unused(backend: str | None) -> None:
    """Make the drivers ``backend`` does not use unimportable in this process
    (before peewee is imported); nothing for no backend or one not known here."""
    if "peewee" in sys.modules:
        raise RuntimeError("peewee is imported already: its drivers are loaded")
    if backend in _POSTGRES_UNUSED:
        _leave_unloaded(_POSTGRES_UNUSED[backend] + _MYSQL)


def only_for(backend: str | None) -> None:
    """In a process whose one store is on ``backend`` (an ``outboxd`` command, a
    role), leave the PostgreSQL drivers that store does not use unloaded. Nothing
    once peewee is imported (a process holding stores of both backends, as the
    tests and the benchmarks do, imports it first) or for a backend not known here."""
    if "peewee" not in sys.modules:
        _leave_unloaded(_POSTGRES_UNUSED.get(backend or "", ()))
