"""``outboxd backup FILE``: a checked, private copy of the SQLite database; what it
refuses; PostgreSQL pointed to pg_dump (and the command it prints restores)."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.store.db import open_database
from daemon.store.migrations import LATEST, migrate
from daemon.store.sync import Store
from tests.services import pg_admin_connect, pg_schema_url
from tests.support.cli import outboxd

pytestmark = pytest.mark.slow  # a process per command


def tables(path: Path) -> dict[str, list[str]]:
    """Every table of the SQLite file at ``path`` with its rows (as text, sorted)."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: sorted(map(repr, conn.execute(f'SELECT * FROM "{n}"'))) for n in names}
    finally:
        conn.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A migrated SQLite database ``o.db`` holding messages, and ``o.yaml`` naming it."""
    (tmp_path / "o.yaml").write_text("database: sqlite:///o.db\n")
    store = Store(open_database(DatabaseSettings(url=f"sqlite:///{tmp_path}/o.db")))
    migrate(store.db)
    store.enqueue_many([NewMessage("hook", f"k{i}", b'{"n": %d}' % i, "json") for i in range(30)])
    store.close()  # the last connection: what is in the WAL is checkpointed
    return tmp_path


def backup(workdir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return outboxd("backup", "-c", "o.yaml", *args, cwd=workdir)


def test_a_backup_holds_every_row_in_one_private_file(workdir: Path):
    # a connection holds the database open, its last writes still in the WAL
    store = Store(open_database(DatabaseSettings(url=f"sqlite:///{workdir}/o.db")))
    try:
        store.enqueue_many([NewMessage("hook", "in-the-wal", b"{}", "json")])
        assert (workdir / "o.db-wal").stat().st_size > 0
        result = backup(workdir, "copies/nightly.db")
        assert result.returncode == 0, result.stderr.decode()
        copy = workdir / "copies" / "nightly.db"
        out = result.stdout.decode()
        assert out.startswith(f"backed up to copies/nightly.db: schema version {LATEST}, ")
        assert "31 messages" in out and "integrity checked" in out
        assert tables(copy) == tables(workdir / "o.db")
        assert (copy.stat().st_mode & 0o777) == 0o600
        assert ((workdir / "copies").stat().st_mode & 0o777) == 0o700
        assert os.listdir(workdir / "copies") == ["nightly.db"]  # no temporary file, no -wal
        conn = sqlite3.connect(copy)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        conn.close()
    finally:
        store.close()


def test_an_existing_file_is_kept_unless_forced(workdir: Path):
    (workdir / "b.db").write_bytes(b"yesterday's")
    refused = backup(workdir, "b.db")
    assert refused.returncode == 73
    assert "b.db exists: give --force to replace it" in refused.stderr.decode()
    assert (workdir / "b.db").read_bytes() == b"yesterday's"
    forced = backup(workdir, "b.db", "--force")
    assert forced.returncode == 0, forced.stderr.decode()
    assert tables(workdir / "b.db") == tables(workdir / "o.db")
    assert [p.name for p in workdir.iterdir() if not p.name.startswith("o.")] == ["b.db"]


@pytest.mark.parametrize("target", ["o.db", "o.db-wal", "o.db-shm", "./o.db", "link.db"])
def test_the_database_itself_is_never_a_target(workdir: Path, target: str):
    (workdir / "link.db").symlink_to("o.db")
    before = (workdir / "o.db").read_bytes()
    result = backup(workdir, target, "--force")
    assert result.returncode == 73
    assert "is the database o.db or one of its files" in result.stderr.decode()
    assert (workdir / "o.db").read_bytes() == before


def test_a_directory_is_not_a_target(workdir: Path):
    (workdir / "dir").mkdir()
    result = backup(workdir, "dir", "--force")
    assert result.returncode == 73
    assert "dir is a directory: name the file to write" in result.stderr.decode()


def test_an_unwritable_place_is_an_io_error_and_leaves_nothing(workdir: Path):
    (workdir / "file").write_text("")
    result = backup(workdir, "file/b.db")
    assert result.returncode == 74
    err = result.stderr.decode()
    assert err.startswith("outboxd: backup failed, nothing written: cannot write next to")
    assert "Traceback" not in err


def test_no_database_or_no_schema_is_a_config_error(tmp_path: Path):
    (tmp_path / "o.yaml").write_text("database: sqlite:///o.db\n")
    missing = outboxd("backup", "-c", "o.yaml", "b.db", cwd=tmp_path)
    assert missing.returncode == 78
    assert "no database at o.db" in missing.stderr.decode()
    assert not (tmp_path / "o.db").exists()  # nothing created
    (tmp_path / "o.db").touch()
    empty = outboxd("backup", "-c", "o.yaml", "b.db", cwd=tmp_path)
    assert empty.returncode == 78
    assert "o.db holds no outboxd schema (version 0): nothing to back up" in empty.stderr.decode()
    assert not (tmp_path / "b.db").exists()


def test_a_damaged_database_gives_no_backup(workdir: Path):
    # pages no table owns: SQLite reads the rest, PRAGMA integrity_check does not pass
    conn = sqlite3.connect(workdir / "o.db")
    conn.execute("CREATE TABLE junk (a TEXT)")
    conn.executemany("INSERT INTO junk VALUES (?)", [("x" * 100,) for _ in range(200)])
    conn.commit()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'junk'")
    conn.commit()
    conn.close()
    result = backup(workdir, "b.db")
    assert result.returncode == 65
    err = result.stderr.decode()
    assert "backup failed, nothing written: the copy failed its integrity check (" in err
    assert "is never used" in err
    assert "check it with: sqlite3 o.db 'PRAGMA integrity_check'" in err
    assert len(err.strip().splitlines()) == 1
    assert [p.name for p in workdir.iterdir() if not p.name.startswith("o.")] == []


@pytest.mark.postgres
def test_postgres_is_pointed_to_pg_dump_whose_command_restores(tmp_path: Path):
    schema, restored = f"outboxd_backup_{os.getpid()}", f"outboxd_restored_{os.getpid()}"
    with pg_admin_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"DROP DATABASE IF EXISTS {restored}")
        conn.execute(f"CREATE DATABASE {restored}")
    try:
        url = pg_schema_url(schema)
        store = Store(open_database(DatabaseSettings(url=url)))
        migrate(store.db)
        store.enqueue_many([NewMessage("hook", f"k{i}", b"{}", "json") for i in range(12)])
        store.close()
        (tmp_path / "o.yaml").write_text(f"database: '{url}'\n")
        result = outboxd("backup", "-c", "o.yaml", "outboxd.dump", cwd=tmp_path)
        assert result.returncode == 64
        err = result.stderr.decode()
        assert err.startswith("outboxd: outboxd backup copies a SQLite database; back up ")
        assert "restore with pg_restore; see docs/backup.md" in err
        assert not (tmp_path / "outboxd.dump").exists()
        command = err.split("tools: ", 1)[1].split(" (restore with", 1)[0]
        assert f"-n {schema}" in command and "-f outboxd.dump" in command
        if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
            pytest.skip("pg_dump and pg_restore are not on PATH: the printed command not run")
        words = shlex.split(command)
        subprocess.run(words, cwd=tmp_path, check=True, timeout=120)
        server = [w for i, w in enumerate(words) if w in ("-h", "-p", "-U") or (
            i > 0 and words[i - 1] in ("-h", "-p", "-U"))]  # fmt: skip
        # a dump of outboxd's schema alone leaves out the extension it uses (in public):
        # the new database gets it first, as docs/backup.md says
        with psycopg.connect(_in_database(restored, schema).split("?")[0], autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        restore = ["pg_restore", *server, "-d", restored, "outboxd.dump"]
        subprocess.run(restore, cwd=tmp_path, check=True, timeout=120)
        back = Store(open_database(DatabaseSettings(url=_in_database(restored, schema))))
        assert back.check_schema() == LATEST
        rows = back.db.execute_sql("SELECT count(*) FROM outboxd_message").fetchone()
        assert rows[0] == 12
        back.close()
    finally:
        with pg_admin_connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"DROP DATABASE IF EXISTS {restored} WITH (FORCE)")


def _in_database(database: str, schema: str) -> str:
    url = pg_schema_url(schema)
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}?{query}"
