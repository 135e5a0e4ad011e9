"""A dispatcher's start, as supervisord runs it: with one message waiting it
delivers it, and by then it has loaded no web framework, no database driver and no
scheduler (its store worker holds the driver; on PostgreSQL the doorbell's LISTEN
connection is its own). The worker's imports: tests/unit/test_layers.py; what the
start costs in time: ops/bench/startup.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from daemon.sim.mllp import MllpSimulator
from tests.integration.test_dispatch_mllp import configure, demo, enqueue_hl7
from tests.integration.test_dispatcher import statuses
from tests.support.processes import ROOT
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NOT_IN_THE_DISPATCHER = {"aiohttp", "peewee", "psycopg", "pymysql", "apscheduler", "supervisor"}


def modules(log: str) -> set[str]:
    """The modules a ``-X importtime`` log names (a package left unloaded,
    ``sys.modules[name] = None``, is named alone: none of its modules)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and "self [us]" not in line
    }


def imported(log: str) -> set[str]:
    """The top-level packages a ``-X importtime`` log names."""
    return {name.split(".")[0] for name in modules(log)}


async def test_a_dispatcher_delivers_having_loaded_no_framework_and_no_driver(
    tmp_path, db_url, store
):
    async with MllpSimulator() as peer:
        config, _ = configure(tmp_path, db_url, peer.port)
        enqueue_hl7(store, config, {"first": demo("FIRST-1")})
        log = tmp_path / "dispatcher.log"
        with log.open("wb") as out:
            # -X importtime reaches this process alone: its store worker is not traced
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-X", "importtime", "-m", "daemon", "run", "dispatcher",
                "-c", str(config), cwd=tmp_path, stdout=out, stderr=out,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
            )  # fmt: skip
            try:
                await eventually(
                    lambda: statuses(store) == {"sent": 1},
                    "the message delivered",
                    dump=lambda: log.read_text(errors="replace")[-3000:],
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 60) == 0
    loaded = imported(log.read_text(errors="replace"))
    assert {"daemon", "pydantic", "prometheus_client"} <= loaded  # the trace is there
    # on PostgreSQL the doorbell's LISTEN connection is the dispatcher's own: psycopg
    unwanted = NOT_IN_THE_DISPATCHER - ({"psycopg"} if db_url.startswith("postgres") else set())
    assert not loaded & unwanted, sorted(loaded & unwanted)


def traced(tmp_path, *argv: str) -> tuple[int, set[str], str]:
    """``python -X importtime -m daemon ARGV``: its exit code, the modules it
    imported (``modules``), its standard error."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "daemon", *argv],
        cwd=tmp_path, capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    err = result.stderr.decode(errors="replace")
    return result.returncode, modules(err), err


def loads(modules: set[str], package: str) -> bool:
    return any(m.startswith(f"{package}.") for m in modules)


def test_a_command_on_sqlite_loads_the_store_without_the_postgresql_driver(tmp_path):
    config = tmp_path / "o.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/o.db\n")
    for argv in (["migrate"], ["messages", "list"], ["stats"]):
        code, loaded, err = traced(tmp_path, *argv, "-c", str(config))
        assert code == 0, err[-2000:]
        assert "peewee" in loaded and not loads(loaded, "psycopg"), argv


def test_a_command_on_postgresql_loads_its_driver(tmp_path, pg_url):
    config = tmp_path / "o.yaml"
    config.write_text(f"database: {pg_url}\n")
    code, loaded, err = traced(tmp_path, "migrate", "-c", str(config))
    assert code == 0, err[-2000:]
    assert "peewee" in loaded and loads(loaded, "psycopg")
