"""docs/backup.md: every block runs as it is written, named by the comment above it,
in a suite's directory of its own: ``.venv/bin/outboxd`` is this outboxd, the
database ``var/outboxd.db``. What cannot run here is stood in for: ``supervisorctl``
checks its arguments against the repository's supervisord.conf and notes what it
was asked, ``pip`` checks the package name and notes it, ``date`` gives a fixed
day (2026-11-23, a Monday)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from daemon.config.database import DatabaseSettings
from daemon.config.loader import parse_config
from daemon.domain.messages import NewMessage
from daemon.scheduling.cron import parse_crontab
from daemon.store.db import open_database
from daemon.store.migrations import LATEST, current_version, migrate
from daemon.store.sync import Store
from tests.services import PG_URL, pg_admin_connect

pytestmark = pytest.mark.slow  # processes

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "backup.md").read_text()
BLOCKS = dict(re.findall(r"<!-- test: ([\w-]+) -->\n```\w+\n(.*?)```", DOC, re.S))

SUPERVISORCTL = """#!{python}
import configparser, sys
args = sys.argv[1:]
if len(args) != 4 or args[0] != "-c" or args[2] not in ("stop", "start"):
    sys.exit(f"supervisorctl: unexpected arguments {{args}}")
conf = configparser.RawConfigParser()
if not conf.read(args[1]):
    sys.exit(f"supervisorctl: no {{args[1]}}")
group, _, name = args[3].partition(":")
if f"group:{{group}}" not in conf.sections() or name != "*":
    sys.exit(f"supervisorctl: no group {{group}} in {{args[1]}}")
with open("calls.log", "a") as log:
    log.write(f"supervisorctl {{args[2]}} {{args[3]}}\\n")
"""
PIP = """#!{python}
import sys
if sys.argv[1:] != ["install", "--upgrade", "{name}"]:
    sys.exit(f"pip: unexpected arguments {{sys.argv[1:]}}")
with open("calls.log", "a") as log:
    log.write("pip " + " ".join(sys.argv[1:]) + "\\n")
"""
DATE = """#!/bin/sh
case "$1" in
  +%F) echo 2026-11-23 ;;
  +%a) echo Mon ;;
  *) exec /bin/date "$@" ;;
esac
"""
OUTBOXD = '#!/bin/sh\nPYTHONPATH={root} exec {python} -m daemon "$@"\n'
CONFIG = """database: {url}
channels:
  hook: {{kind: http, url: 'http://127.0.0.1:9/hook'}}
"""


def test_every_block_is_named_and_run_here():
    fences = re.findall(r"^```", DOC, re.M)
    assert len(fences) == 2 * len(BLOCKS)  # every block has its name
    ran = {"sqlite-backup", "crontab", "sqlite-restore", "inspect-yaml", "inspect"}
    ran |= {"pg-dump", "pg-restore", "upgrade"}
    assert set(BLOCKS) == ran


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def project_name() -> str:
    return re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A suite's directory: supervisord.conf, config/outboxd.yaml, var/outboxd.db
    migrated with 20 messages, .venv/bin's outboxd and stand-ins."""
    shutil.copy(ROOT / "supervisord.conf", tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "outboxd.yaml").write_text(CONFIG.format(url="sqlite:///var/outboxd.db"))
    (tmp_path / "var" / "log").mkdir(parents=True)
    venv, stand_ins = tmp_path / ".venv" / "bin", tmp_path / "bin"
    venv.mkdir(parents=True)
    stand_ins.mkdir()
    executable(venv / "outboxd", OUTBOXD.format(root=ROOT, python=sys.executable))
    executable(venv / "supervisorctl", SUPERVISORCTL.format(python=sys.executable))
    executable(venv / "pip", PIP.format(python=sys.executable, name=project_name()))
    executable(stand_ins / "date", DATE)
    enqueue(f"sqlite:///{tmp_path}/var/outboxd.db", "m", 20)
    return tmp_path


def enqueue(url: str, prefix: str, count: int, upto: int | None = None) -> None:
    store = Store(open_database(DatabaseSettings(url=url)))
    try:
        migrate(store.db, upto=upto)
        if upto is None:
            store.enqueue_many(
                [NewMessage("hook", f"{prefix}{i}", b"{}", "json") for i in range(count)]
            )
    finally:
        store.close()


KILLED = """
import os, sys
from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.store.db import open_database
from daemon.store.sync import Store
store = Store(open_database(DatabaseSettings(url="sqlite:///" + sys.argv[1])))
count = int(sys.argv[2])
store.enqueue_many([NewMessage("hook", f"later{i}", b"{}", "json") for i in range(count)])
os._exit(0)  # no close: what it wrote stays in the -wal, as after a kill -9
"""


def killed_after_writing(path: Path, count: int) -> None:
    """A process that enqueues ``count`` messages and dies without closing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", KILLED, str(path), str(count)]
    subprocess.run(command, check=True, env=env, timeout=60)


def run(
    suite: Path, script: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "OUTBOXD_CONFIG"}
    environ["PATH"] = f"{suite / 'bin'}:{environ['PATH']}"
    environ.update(env or {})
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=suite,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def messages(path: Path) -> int:
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outboxd_message").fetchone()[0])
    finally:
        conn.close()


def calls(suite: Path) -> list[str]:
    log = suite / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_backup_restore_and_inspect_a_sqlite_database(suite: Path):
    out = ok(run(suite, BLOCKS["sqlite-backup"]))
    backup = suite / "var" / "backup" / "outboxd-2026-11-23.db"
    assert out.startswith(f"backed up to var/backup/outboxd-2026-11-23.db: schema version {LATEST}")
    assert (backup.stat().st_mode & 0o777) == 0o600
    killed_after_writing(suite / "var" / "outboxd.db", 5)  # its last writes in its -wal
    assert (suite / "var" / "outboxd.db-wal").stat().st_size > 0

    out = ok(run(suite, BLOCKS["sqlite-restore"]))
    assert f"schema is up to date (version {LATEST})" in out
    assert sorted(p.name for p in (suite / "var" / "broken").iterdir()) == [
        "outboxd.db", "outboxd.db-shm", "outboxd.db-wal"
    ]  # fmt: skip
    assert messages(suite / "var" / "outboxd.db") == 20  # as the backup has it
    assert messages(suite / "var" / "broken" / "outboxd.db") == 25  # set aside, whole
    assert calls(suite) == ["supervisorctl stop outboxd:*", "supervisorctl start outboxd:*"]

    yaml = BLOCKS["inspect-yaml"]
    parse_config(yaml, source="docs/backup.md", environ={})
    (suite / "config" / "inspect.yaml").write_text(yaml)
    out = ok(run(suite, BLOCKS["inspect"]))
    assert "hook" in out and "20" in out


def test_the_crontab_line(suite: Path):
    line = BLOCKS["crontab"].strip()
    assert len(line.splitlines()) == 1
    fields = line.split(None, 5)
    parse_crontab(" ".join(fields[:5]))  # a valid schedule
    command = fields[5]
    assert "%" not in command.replace("\\%", "")  # cron reads a bare % as a line break
    command = command.replace("cd /srv/outboxd", f"cd {suite}").replace("\\%", "%")
    for _ in range(2):  # a week later, last Monday's copy is replaced
        ok(run(suite, command))
    assert (suite / "var" / "backup" / "outboxd-Mon.db").exists()
    log = (suite / "var" / "log" / "backup.log").read_text()
    assert log.count("backed up to var/backup/outboxd-Mon.db") == 2


def test_the_upgrade_steps(suite: Path):
    (suite / "var" / "outboxd.db").unlink()
    enqueue(f"sqlite:///{suite}/var/outboxd.db", "m", 0, upto=LATEST - 1)  # an older schema
    out = ok(run(suite, BLOCKS["upgrade"]))
    assert f"schema version {LATEST - 1}" in out  # the backup took the schema as it was
    assert f"schema upgraded from version {LATEST - 1} to {LATEST}" in out
    assert calls(suite) == [
        "supervisorctl stop outboxd:*",
        f"pip install --upgrade {project_name()}",
        "supervisorctl start outboxd:*",
    ]
    db = open_database(DatabaseSettings(url=f"sqlite:///{suite}/var/backup/before-upgrade.db"))
    try:
        assert current_version(db) == LATEST - 1
    finally:
        db.close()


@pytest.mark.postgres
def test_pg_dump_and_pg_restore(suite: Path):
    if not all(shutil.which(t) for t in ("pg_dump", "pg_restore", "createdb", "psql")):
        pytest.skip("pg_dump, pg_restore, createdb and psql are needed on PATH")
    prod, restored = f"outboxd_doc_prod_{os.getpid()}", f"outboxd_doc_restored_{os.getpid()}"
    server = urlsplit(PG_URL.split("?")[0])
    env = {
        "PGHOST": server.hostname or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        "PGUSER": server.username or "postgres",
    }
    with pg_admin_connect() as conn:
        for name in (prod, restored):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {prod}")
    base = PG_URL.split("?")[0].rsplit("/", 1)[0]
    try:
        enqueue(f"{base}/{prod}", "m", 12)
        ok(run(suite, BLOCKS["pg-dump"].replace("outboxd_prod", prod), env))
        assert (suite / "outboxd-2026-11-23.dump").exists()
        (suite / "config" / "restored.yaml").write_text(CONFIG.format(url=f"{base}/{restored}"))
        out = ok(run(suite, BLOCKS["pg-restore"].replace("outboxd_restored", restored), env))
        assert f"schema is up to date (version {LATEST})" in out
        store = Store(open_database(DatabaseSettings(url=f"{base}/{restored}")))
        try:
            assert store.tally_counts() == {("hook", "pending"): 12}
        finally:
            store.close()
    finally:
        with pg_admin_connect() as conn:
            for name in (prod, restored):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
