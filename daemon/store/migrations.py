"""Schema versions: each migration is frozen DDL, applied once, in order, under a lock.

The DDL and the triggers are SQL files, one per version and backend
(``ddl/<dialect>/NNNN_name.sql``, shipped with the package); this module only
runs them. Models describe the newest schema; migrations never read them, so an
old migration keeps creating exactly what it created when it was written.

What the versions made: v1 messages, status events, rate buckets, visits, poll
cursors; v2 a visit per (source, kodebooking), messages linked to their visit;
v3 the scheduler's fire ledger, alert and breaker states, notifications, status
checks, the audit; v4 listings newest first by channel, status and key prefix
(PostgreSQL compares text by collation, so a key prefix has a
``varchar_pattern_ops`` index there), bulk operations, webhook receipts; v5
counts kept as rows change (``outboxd_tally``, ``outboxd_minute_tally``), by
triggers in the transaction of the change: on SQLite one row per key updated
in place, on PostgreSQL each statement appends its net change (no row two
writers would wait for) and ``fold_tallies`` sums them now and then; filled
from what is there already (the triggers, made first, hold writers back until
the migration commits) and the minutes of the last week from the events; v6
content search: the payload's text indexed in runs of three characters (SQLite:
an FTS5 ``trigram`` table over the messages' payloads, kept by triggers and
built from what is there; PostgreSQL: ``outboxd_message_text``, each payload's
bytes as text in a row written once by a trigger when the message is stored, with
a ``pg_trgm`` GIN index, so a status change touches no trigram index; the
extension created in ``public`` where the database has none),
and ``outboxd_message_field``, the fields each message is found by (HL7: MSH-10,
MSH-9, PID-3, PV1-19), written by the store as it stores a message (messages
stored before v6 have none: they are found by their text); v7
a run's cancel asked for by an operator (who, when, why: the scheduler holding
the run reads it), a schedule's count of the runs it made (``max_runs``), a
notification's subject line and text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from importlib import resources

import peewee as pw

from daemon.domain.clock import utcnow
from daemon.domain.errors import SchemaMismatch
from daemon.store.db import unavailable_on_error
from daemon.store.models import db_timestamp
from daemon.store.sql import dialect_for

VERSION_TABLE = "outboxd_schema"
_LOCK_ID = 0x6F7574626F78  # advisory lock key of migrators (PostgreSQL): "outbox"
DDL = resources.files("daemon.store") / "ddl"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # its file: ddl/<dialect>/<version:04d>_<name>.sql
    description: str

    def script(self, dialect: str) -> str:
        return (DDL / dialect / f"{self.version:04d}_{self.name}.sql").read_text("utf-8")

    def apply(self, db: pw.Database) -> None:
        """Run its file, statement by statement, inside the caller's transaction."""
        sql = dialect_for(db)
        week_ago = db_timestamp(utcnow() - timedelta(days=7))  # v5 fills the last week
        sql.run_script(self.script(sql.name), {"week_ago": week_ago})


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "messages",
        "messages, status events, rate buckets, visits, poll cursors, schedules, job runs",
    ),
    Migration(
        2,
        "visits_per_source",
        "visits per source and booking code; messages linked to their visit",
    ),
    Migration(
        3,
        "scheduler_alerts_audit",
        "the scheduler's fire ledger and schedules, alert states, notifications, breaker "
        "states, remote status checks, the audit of operator actions",
    ),
    Migration(
        4,
        "operator_webhooks",
        "listings newest first by channel, status and key prefix; bulk operator actions; "
        "partners' signed status callbacks (webhook receipts)",
    ),
    Migration(
        5,
        "tallies",
        "counts per channel and status, and per minute of what became sent or failed, "
        "kept by triggers",
    ),
    Migration(
        6,
        "content_search",
        "finding messages by what they say: the payload's text indexed in runs of three "
        "characters, and the fields an HL7 message is looked up by",
    ),
    Migration(
        7,
        "run_control",
        "a run's cancel asked for by an operator, a schedule's runs counted against "
        "max_runs, notifications kept with their text",
    ),
)
LATEST = MIGRATIONS[-1].version


def _ensure_version_table(db: pw.Database) -> None:
    sql = dialect_for(db)
    with db.atomic():
        sql.exclusive(_LOCK_ID)
        sql.run_script((DDL / sql.name / "schema_versions.sql").read_text("utf-8"))


def current_version(db: pw.Database) -> int:
    """The newest applied migration, 0 for an empty database."""
    with unavailable_on_error(db):
        if not db.table_exists(VERSION_TABLE):
            return 0
        row = db.execute_sql(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()
    return int(row[0] or 0)


def migrate(db: pw.Database, upto: int | None = None) -> list[Migration]:
    """Apply what is missing, each migration in its own transaction; idempotent and
    safe to run from several processes at once. Returns what this call applied.

    ``upto``: stop after that version (the schema an earlier outboxd made, for the
    upgrade tests); by default the newest. A database already past it is left as
    it is."""
    if upto is not None and not 0 <= upto <= LATEST:
        raise ValueError(f"no schema version {upto}: this outboxd knows 1 to {LATEST}")
    with unavailable_on_error(db):
        return _migrate(db, LATEST if upto is None else upto)


def _migrate(db: pw.Database, upto: int) -> list[Migration]:
    _ensure_version_table(db)
    sql = dialect_for(db)
    applied: list[Migration] = []
    for migration in (m for m in MIGRATIONS if m.version <= upto):
        with db.atomic():
            sql.exclusive(_LOCK_ID)
            if current_version(db) >= migration.version:
                continue
            migration.apply(db)
            db.execute_sql(
                f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) "
                f"VALUES ({db.param}, {db.param}, {db.param})",
                (migration.version, migration.description, db_timestamp(utcnow())),
            )
        applied.append(migration)
    newest = current_version(db)
    if newest > LATEST:
        raise SchemaMismatch(
            f"the database schema is at version {newest}, newer than this outboxd knows "
            f"({LATEST}): upgrade outboxd"
        )
    return applied


def require_current(db: pw.Database) -> int:
    """Raise a clear error unless the schema is exactly the one this code expects
    (and the features the dialect's statements need are there).

    The compatibility rule: a process runs only on the schema version it was made
    for. An older schema is refused (``outboxd migrate`` upgrades it; no process
    migrates by itself, so an upgrade is a step an operator takes, after a backup),
    and so is a newer one (made by a newer outboxd, whose statements and triggers
    this code does not know). Every role checks at start (exit 78, the reason in
    its log), the commands before they read or write."""
    dialect_for(db).require_features()
    version = current_version(db)
    if version < LATEST:
        raise SchemaMismatch(
            f"the database schema is at version {version}, this outboxd needs {LATEST}: "
            "run `outboxd migrate`"
        )
    if version > LATEST:
        raise SchemaMismatch(
            f"the database schema is at version {version}, newer than this outboxd knows "
            f"({LATEST}): upgrade outboxd"
        )
    return version
