"""What outboxd writes is its owner's alone, under the usual umask 022: a new
SQLite database with its -wal and -shm and its directories, the export job's
files, every process the command starts (umask 077), and, under ``make run``,
supervisord's log, pid file and its programs' logs."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.jobs import export
from daemon.store.aio import open_async_store
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.sync import Store
from tests.integration.test_jobs import context
from tests.support.ports import free_port
from tests.support.processes import ROOT, DaemonProcess
from tests.support.waiting import eventually


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_its_wal_and_shm_and_its_directories_are_private(tmp_path: Path):
    path = tmp_path / "var" / "data" / "outbox.db"
    url = f"sqlite:///{path}"
    database = open_database(DatabaseSettings(url=url), create=True)
    migrate(database)
    database.close()
    store = Store(open_database(DatabaseSettings(url=url)))
    try:
        store.enqueue(NewMessage("hook", "k", b"{}"), actor="test")
        files = [path, path.with_name("outbox.db-wal"), path.with_name("outbox.db-shm")]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        store.close()
    assert mode(tmp_path / "var") == mode(tmp_path / "var" / "data") == 0o700


@pytest.mark.slow  # outboxd migrate and every role as processes
def test_outboxd_migrate_and_the_roles_run_with_umask_077(tmp_path: Path):
    db = tmp_path / "outbox.db"
    health = free_port()
    config = tmp_path / "outboxd.yaml"
    config.write_text(
        f"database: sqlite:///{db}\nroles:\n  poller: {{base_port: {health}}}\n"
        "logging: {level: WARNING}\n"
    )
    migrated = subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", "-c", str(config)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    assert mode(db) == 0o600
    process = DaemonProcess(tmp_path, config, role="poller")

    async def run() -> str:
        await process.start(health)
        try:
            assert process.proc is not None
            return Path(f"/proc/{process.proc.pid}/status").read_text()
        finally:
            await process.stop()

    status = asyncio.run(run())
    assert re.search(r"^Umask:\s+0077$", status, re.M), status


async def test_the_export_jobs_files_and_directory_are_private(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/outbox.db"
    database = open_database(DatabaseSettings(url=url), create=True)
    migrate(database)
    database.close()
    store = open_async_store(DatabaseSettings(url=url), in_process=False)
    try:
        fire = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
        await store.enqueue(NewMessage("filings", "k", b'{"patient": "x"}'), now=fire)
        options = export.ExportOptions(
            what="messages", period="last_month", format="ndjson",
            directory=str(tmp_path / "exports" / "monthly"),
        )  # fmt: skip
        output = await export.run(context(store, fire), options)
    finally:
        await store.aclose()
    written = Path(output["path"])
    assert mode(written) == 0o600
    assert mode(written.parent) == mode(written.parent.parent) == 0o700


PROGRAM = """
[program:talker]
command={python} -c "import os, time; print('umask', oct(os.umask(0)), flush=True); time.sleep(60)"
startsecs=0
stopwaitsecs=2
stdout_logfile=%(here)s/var/log/talker.log
redirect_stderr=true

[program:auto]
command={python} -c "import time; print('hello', flush=True); time.sleep(60)"
startsecs=0
stopwaitsecs=2
"""


def _shipped_header() -> str:
    """supervisord.conf as shipped, up to its programs: the socket, [supervisord],
    the RPC interface, supervisorctl."""
    text = (ROOT / "supervisord.conf").read_text()
    return text[: text.index("\n[group:outboxd]") + 1]


@pytest.mark.slow  # supervisord and its programs
async def test_make_runs_supervisord_and_its_programs_logs_are_private():
    """``make run``'s ops/run.sh with the shipped supervisord.conf's header (its
    programs replaced by two that print), started from a shell whose umask is 022."""
    root = Path(tempfile.mkdtemp(prefix="outboxd-pf-"))  # short: the socket's path
    (root / "supervisord.conf").write_text(
        _shipped_header() + PROGRAM.replace("{python}", sys.executable)
    )
    (root / "outboxd.yaml").write_text(f"database: sqlite:///{root}/none.db\n")
    run = await asyncio.create_subprocess_exec(
        "sh", str(ROOT / "ops" / "run.sh"), str(Path(sys.executable).parent),
        str(root / "outboxd.yaml"), "30",
        cwd=root, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    var, logs = root / "var", root / "var" / "log"
    try:
        talker = logs / "talker.log"
        # the whole line: the log may be read while that line is being written
        await eventually(lambda: talker.exists() and "\n" in talker.read_text(),
                         "the program's first line in its log")  # fmt: skip
        auto = await eventually(lambda: list(logs.glob("auto-stdout*.log")),
                                "the log supervisord names itself")  # fmt: skip
        assert "umask 0o77" in talker.read_text()  # what the programs create: private too
        written = [logs / "supervisord.log", talker, *auto, var / "supervisord.pid"]
        assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
        assert mode(var) == mode(logs) == 0o700
    finally:
        run.terminate()  # run.sh stops supervisord, which stops its programs
        await asyncio.wait_for(run.wait(), 60)
        subprocess.run(["rm", "-rf", str(root)], check=False)
