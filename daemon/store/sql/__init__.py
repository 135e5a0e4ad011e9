"""The SQL of the store: one dialect object per backend (``sqlite.py``,
``postgres.py``) with every statement of the delivery path by name."""

from __future__ import annotations

import peewee as pw

from daemon.store.sql.base import Dialect


def dialect_for(db: pw.Database) -> Dialect:
    """The dialect of the database's backend."""
    if isinstance(db, pw.PostgresqlDatabase):
        from daemon.store.sql.postgres import PostgresDialect

        return PostgresDialect(db)
    from daemon.store.sql.sqlite import SqliteDialect

    return SqliteDialect(db)
