"""Upgrading a database made by an earlier outboxd: from every earlier schema
version, rows in every table that version has, then ``outboxd migrate`` (the
command), and every row is there with its values; what the later versions derive
from them (the visit links, the tallies, the search index) is right."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.clock import utcnow
from daemon.domain.selection import MessageFilter
from daemon.domain.statuses import STATUSES
from daemon.store.db import is_postgres, open_database
from daemon.store.migrations import LATEST, VERSION_TABLE, current_version, migrate
from daemon.store.models import db_timestamp
from daemon.store.sync import Store
from tests.support.cli import outboxd
from tests.support.ports import free_port
from tests.support.processes import START_TIMEOUT, DaemonProcess

pytestmark = pytest.mark.slow  # a process per upgrade

# Tables a later migration replaced, by the version that did: v1's schedules and
# job runs were placeholders no outboxd wrote (the scheduler came with v3, which
# made them anew), so v3 drops them and what they hold.
REPLACED = {3: {"outboxd_schedule", "outboxd_job_run"}}
# Tables outboxd keeps from the others (triggers, a migration's fill): checked for
# what they must say, not filled by hand.
DERIVED = {"outboxd_tally", "outboxd_minute_tally", "outboxd_message_text"}


def when(minutes: float) -> str:
    """A stored timestamp ``minutes`` after an hour ago (within the week v5 counts)."""
    base = utcnow().replace(microsecond=123456) - timedelta(hours=1)
    return db_timestamp(base + timedelta(minutes=minutes))


def sample_rows() -> dict[str, list[dict[str, Any]]]:
    """Rows for every table any version has, by column (a row gives the columns of
    every version; each version takes those it has). Messages in every status."""
    progress = '{"1": {"status": "sent", "sent_at": "2026-11-23T01:00:00Z"}}'
    messages = [
        {
            "id": 10 + i,
            "channel": "hie" if i % 2 else "bpjs",
            "kind": "hl7v2" if i % 2 else "bpjs.task",
            "key": f"key-{status}-ü",
            "payload": f"MSH|^~\\&|{status}|Ünïcode".encode() + b"\xff\x00raw",
            "status": status,
            "attempts": i,
            "next_attempt_at": when(i),
            "lease_owner": "dispatcher.0:1" if status == "sending" else None,
            "lease_expires_at": when(i + 5) if status == "sending" else None,
            "last_error": "HTTP 503 from peer" if status in ("failed", "pending") else None,
            "response": "MSA|AA|x" if status in ("sent", "confirmed", "rejected") else None,
            "after_id": 10 if i == 3 else None,
            "group_key": "BOOK-1" if i % 2 == 0 else None,
            "created_at": when(i - 30),
            "updated_at": when(i),
            "sent_at": when(i) if status in ("sent", "confirmed", "rejected") else None,
            "visit_id": None,
            "predecessors_resent_at": when(1) if i == 2 else None,
        }
        for i, status in enumerate(STATUSES)
    ]
    return {
        "outboxd_message": messages,
        "outboxd_status_event": [
            {
                "id": 100 + n,
                "message_id": m["id"],
                "from_status": prior,
                "to_status": status,
                "actor": "dispatcher.0",
                "details": '{"peer": "ok"}' if status == "sent" else None,
                "at": when(n),
            }
            for n, (m, prior, status) in enumerate(
                [(m, None, "pending") for m in messages]
                + [(m, "sending", m["status"]) for m in messages if m["status"] != "pending"]
            )
        ],
        "outboxd_rate_bucket": [
            {"channel": "hie", "tokens": 2.5, "updated_at": when(0)},
            {"channel": "bpjs", "tokens": 0.0, "updated_at": when(1)},
        ],
        "outboxd_visit": [
            {
                "id": 1,
                "kodebooking": "BOOK-1",
                "source": "rs",
                "task_progress": progress,
                "created_at": when(-40),
                "updated_at": when(0),
            },
            {
                "id": 2,
                "kodebooking": "BOOK-2",
                "source": "rs",
                "task_progress": "{}",
                "created_at": when(-40),
                "updated_at": when(-40),
            },
        ],
        "outboxd_poll_cursor": [
            {"source": "rs", "value": '{"tgl": "2026-11-23", "no": 41}', "updated_at": when(0)},
        ],
        "outboxd_schedule": [
            {
                "id": 1,
                "name": "nightly-export",
                "cron": "0 2 * * *",  # v1, v2
                "timezone": "Asia/Jakarta",
                "job": "export",
                "options": "{}",
                "enabled": True,
                "definition": '{"cron": "0 2 * * *", "job": "export"}',  # v3 on
                "origin": "file",
                "revision": 3,
                "paused": True,
                "pause_note": "audit week",
                "paused_by": "cli:ops",
                "paused_at": when(2),
                "removed_at": None,
                "created_at": when(-50),
                "updated_at": when(2),
                "runs_made": 0,
            },
        ],
        "outboxd_job_run": [
            {
                "id": 1,
                "schedule_id": 1,
                "trigger": "cron",
                "fire_time": when(-20),
                "attempt": 1,
                "status": "succeeded",
                "retry_of": None,
                "due_at": when(-20),
                "started_at": when(-20),
                "finished_at": when(-19),
                "lease_owner": None,
                "lease_expires_at": None,
                "error": None,
                "output": '{"rows": 12}',
                "note": None,
                "created_at": when(-20),
            },
            {
                "id": 2,
                "schedule_id": 1,
                "trigger": "manual",
                "fire_time": when(-10),
                "attempt": 1,
                "status": "failed",
                "retry_of": None,
                "due_at": when(-10),
                "started_at": when(-10),
                "finished_at": when(-9),
                "lease_owner": "scheduler.0",
                "lease_expires_at": when(-8),
                "error": "disk full",
                "output": None,
                "note": "asked by ops",
                "created_at": when(-10),
            },
        ],
        "outboxd_alert": [
            {
                "rule": "stuck",
                "subject": "hie",
                "state": "firing",
                "since": when(0),
                "notified_at": when(1),
                "details": '{"oldest": 3600}',
            },
        ],
        "outboxd_notification": [
            {
                "id": 1,
                "rule": "stuck",
                "subject": "hie",
                "event": "firing",
                "target": "ops-mail",
                "ok": True,
                "answer": "250 OK",
                "at": when(1),
            },
            {
                "id": 2,
                "rule": "stuck",
                "subject": "hie",
                "event": "resolved",
                "target": "ops-hook",
                "ok": False,
                "answer": None,
                "at": when(2),
            },
        ],
        "outboxd_breaker": [
            {
                "channel": "hie",
                "owner": "dispatcher.0",
                "state": "open",
                "since": when(0),
                "detail": "3 failures",
                "updated_at": when(0),
            },
        ],
        "outboxd_status_check": [
            {
                "message_id": 12,
                "checks": 2,
                "checked_at": when(3),
                "answer": '{"status": "processing"}',
                "flagged": False,
            },
        ],
        "outboxd_audit": [
            {
                "id": 1,
                "actor": "cli:ops",
                "action": "retry",
                "target": '{"ids": [13]}',
                "details": None,
                "changed": 1,
                "at": when(4),
            },
        ],
        "outboxd_operation": [
            {
                "id": 1,
                "action": "cancel",
                "filter": '{"channel": "hie"}',
                "actor": "api:ops",
                "state": "done",
                "matched": 3,
                "done": 3,
                "skipped": None,
                "position": 16,
                "upto": 16,
                "result": '{"cancelled": 3}',
                "started_at": when(5),
                "finished_at": when(6),
            },
        ],
        "outboxd_webhook_receipt": [
            {
                "id": 1,
                "webhook": "filing",
                "webhook_id": "msg_2Lx",
                "received_at": when(7),
                "body": '{"status": "accepted"}',
                "body_size": 22,
                "partner_status": "accepted",
                "result": "applied",
                "message_id": 12,
                "answer_status": 200,
                "answer": "ok",
            },
        ],
        "outboxd_message_field": [
            {"name": "control_id", "value": "C-1", "message_id": 11},
            {"name": "mrn", "value": "MRN-0042", "message_id": 11},
        ],
    }


def tables_of(db: pw.Database) -> list[str]:
    """outboxd's tables (SQLite's FTS shadow tables left out: FTS5 owns them)."""
    names = [t for t in db.get_tables() if t.startswith("outboxd_") and t != VERSION_TABLE]
    return [t for t in names if not t.startswith("outboxd_message_text_")]


def fill(db: pw.Database, version: int) -> dict[str, int]:
    """Rows in every table of the schema at hand but the derived ones, each with the
    columns it has: how many in each. A table with no sample rows, or a required
    column without a value, fails: a new migration's tables and columns get sample
    values here."""
    samples = sample_rows()
    present = tables_of(db)
    for table in present:
        assert table in samples or table in DERIVED, f"v{version}'s {table} has no sample rows"
    filled = {}
    for table in (t for t in samples if t in present):  # in their order: references first
        columns = db.get_columns(table)
        names = [c.name for c in columns]
        for column in columns:
            required = not column.null and column.default is None and not column.primary_key
            assert not required or column.name in samples[table][0], (
                f"v{version}'s {table}.{column.name} has no sample value: add one"
            )
        for row in samples[table]:
            given = [n for n in names if n in row]
            quoted = ", ".join(f'"{n}"' for n in given)
            marks = ", ".join([db.param] * len(given))
            values = [row[n] for n in given]
            db.execute_sql(f"INSERT INTO {table} ({quoted}) VALUES ({marks})", values)
        filled[table] = len(samples[table])
    return filled


def snapshot(db: pw.Database, columns: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Each table's rows (the given columns, else all), as comparable text, sorted;
    and its columns."""
    rows: dict[str, Any] = {}
    chosen = columns or {t: [c.name for c in db.get_columns(t)] for t in tables_of(db)}
    for table, names in chosen.items():
        quoted = ", ".join(f'"{n}"' for n in names)
        rows[table] = sorted(
            repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
            for row in db.execute_sql(f"SELECT {quoted} FROM {table}").fetchall()
        )
    return rows


@pytest.mark.parametrize("version", range(1, LATEST))
def test_migrate_from_every_earlier_version_keeps_every_row(
    empty_url: str, version: int, tmp_path: Path
):
    db = open_database(DatabaseSettings(url=empty_url))
    migrate(db, upto=version)
    assert current_version(db) == version
    with db.atomic():
        filled = fill(db, version)
    columns = {t: [c.name for c in db.get_columns(t)] for t in tables_of(db)}
    before = snapshot(db, columns)
    db.close()
    assert all(before[t] for t in filled), "every table filled"

    (tmp_path / "o.yaml").write_text(f"database: '{empty_url}'\n")
    result = outboxd("migrate", "-c", "o.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert f"schema upgraded from version {version} to {LATEST}" in out
    assert [line.split(":")[0] for line in out.splitlines()[:-1]] == [
        f"applied migration {v}" for v in range(version + 1, LATEST + 1)
    ]

    store = Store(open_database(DatabaseSettings(url=empty_url)))
    try:
        assert store.check_schema() == LATEST
        replaced = set().union(*(t for v, t in REPLACED.items() if v > version))
        kept = {t: names for t, names in columns.items() if t not in replaced}
        after = snapshot(store.db, kept)
        for table in kept:
            assert after[table] == before[table], f"{table}'s rows changed from v{version}"
        derived_right(store, version)
    finally:
        store.close()


def derived_right(store: Store, version: int) -> None:
    """What later versions derive from the rows is right: the BPJS messages linked to
    their visit (v2), the counts (v5), the search index (v6)."""
    db = store.db
    messages = sample_rows()["outboxd_message"]
    if version < 2:  # v2 linked each BPJS message of a group to the visit it reports on
        linked = db.execute_sql(
            "SELECT id FROM outboxd_message WHERE visit_id = 1 ORDER BY id"
        ).fetchall()
        assert [r[0] for r in linked] == [
            m["id"] for m in messages if m["group_key"] == "BOOK-1" and m["kind"] == "bpjs.task"
        ]
    counted: dict[tuple[str, str], int] = {}
    for m in messages:
        counted[(m["channel"], m["status"])] = counted.get((m["channel"], m["status"]), 0) + 1
    assert store.tally_counts() == counted
    if version < 5:  # v5 counted the last week's minutes from the events
        minutes = db.execute_sql(
            "SELECT status, SUM(n) FROM outboxd_minute_tally GROUP BY status ORDER BY status"
        ).fetchall()
        events = sample_rows()["outboxd_status_event"]
        expected = {s: sum(1 for e in events if e["to_status"] == s) for s in ("failed", "sent")}
        assert {s: int(n) for s, n in minutes} == expected
    for m in messages:  # every message found by what it says, whatever version stored it
        found = store.list_messages(MessageFilter(text=m["status"] + "|Ünïcode"), limit=10)
        assert [item.id for item in found.items] == [m["id"]], m["status"]
    if is_postgres(db):  # each payload's text row (SQLite: the FTS index, searched above)
        rows = db.execute_sql("SELECT count(*) FROM outboxd_message_text").fetchone()[0]
        assert rows == len(messages)
    else:  # a table v2 rebuilt numbers new rows after the old ones, never reusing an id
        new = db.execute_sql(
            "INSERT INTO outboxd_visit (kodebooking, source, task_progress, created_at, "
            "updated_at) VALUES ('BOOK-3', 'rs', '{}', ?, ?)",
            (when(9), when(9)),
        ).lastrowid
        assert new == 3


def test_migrate_stops_at_the_version_asked_for(empty_url: str):
    db = open_database(DatabaseSettings(url=empty_url))
    try:
        assert [m.version for m in migrate(db, upto=2)] == [1, 2]
        assert current_version(db) == 2
        assert migrate(db, upto=1) == []  # never back
        assert current_version(db) == 2
        assert [m.version for m in migrate(db)] == list(range(3, LATEST + 1))
        with pytest.raises(ValueError, match=f"no schema version {LATEST + 1}"):
            migrate(db, upto=LATEST + 1)
    finally:
        db.close()


# --- the schema a process runs on -----------------------------------------------

DISPATCHER = """
database: '{url}'
channels:
  hook: {{kind: http, url: 'http://127.0.0.1:9/hook'}}
roles:
  dispatcher: {{base_port: {port}}}
"""


def at_version(url: str, version: int) -> None:
    """The database at ``version``: an earlier one, or one from a newer outboxd."""
    db = open_database(DatabaseSettings(url=url))
    try:
        migrate(db, upto=min(version, LATEST))
        if version > LATEST:
            db.execute_sql(
                f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) "
                f"VALUES ({version}, 'from a newer outboxd', '2030-01-01 00:00:00')"
            )
    finally:
        db.close()


OLDER = f"is at version {LATEST - 1}, this outboxd needs {LATEST}: run `outboxd migrate`"
NEWER = f"is at version {LATEST + 1}, newer than this outboxd knows ({LATEST}): upgrade outboxd"


@pytest.mark.parametrize(
    ("version", "says"), [(LATEST - 1, OLDER), (LATEST + 1, NEWER)], ids=["older", "newer"]
)
async def test_a_dispatcher_runs_on_its_own_schema_version_only(
    empty_url: str, tmp_path: Path, version: int, says: str
):
    at_version(empty_url, version)
    port = free_port()
    config = tmp_path / "o.yaml"
    config.write_text(DISPATCHER.format(url=empty_url, port=port))
    proc = DaemonProcess(tmp_path, config)
    try:
        await proc.start(port, wait=False)
        assert proc.proc is not None
        code = await asyncio.wait_for(proc.proc.wait(), START_TIMEOUT)
    finally:
        proc.kill()
    assert code == 78, proc.output()
    assert f"outboxd: the database schema {says}" in proc.output()
    assert "Traceback" not in proc.output()
    db = open_database(DatabaseSettings(url=empty_url))
    try:
        assert current_version(db) == version  # a process never migrates by itself
    finally:
        db.close()
