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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from daemon.sim.mllp import MllpSimulator
from daemon.store.sync import Store
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


@asynccontextmanager
async def one_delivered(
    tmp_path: Path, db_url: str, store: Store, *argv: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """``python ARGV`` (a dispatcher on ``tmp_path / "o.yaml"``: one MLLP channel to
    a peer, one message waiting), entered once the message is sent with the process
    and its log; on leaving, the process is stopped (SIGTERM) if it still runs, and
    must have exited 0."""
    async with MllpSimulator() as peer:
        config, _ = configure(tmp_path, db_url, peer.port)
        assert config == tmp_path / "o.yaml"
        enqueue_hl7(store, config, {"first": demo("FIRST-1")})
        log = tmp_path / "dispatcher.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *argv, cwd=tmp_path, stdout=out, stderr=out,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
            )  # fmt: skip
            try:
                await eventually(
                    lambda: statuses(store) == {"sent": 1},
                    "the message delivered",
                    dump=lambda: log.read_text(errors="replace")[-3000:],
                )
                yield proc, log
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_a_dispatcher_delivers_having_loaded_no_framework_and_no_driver(
    tmp_path, db_url, store
):
    # -X importtime reaches this process alone: its store worker is not traced
    argv = ("-X", "importtime", "-m", "daemon", "run", "dispatcher", "-c", "o.yaml")
    async with one_delivered(tmp_path, db_url, store, *argv) as (_, log):
        pass
    loaded = imported(log.read_text(errors="replace"))
    assert {"daemon", "pydantic", "prometheus_client"} <= loaded  # the trace is there
    # on PostgreSQL the doorbell's LISTEN connection is the dispatcher's own: psycopg
    unwanted = NOT_IN_THE_DISPATCHER - ({"psycopg"} if db_url.startswith("postgres") else set())
    assert not loaded & unwanted, sorted(loaded & unwanted)


# Runs ``outboxd run dispatcher`` in this interpreter with a thread that, once the
# test has seen the message delivered (the file ``delivered``), writes the state of
# the cyclic garbage collector to ``collector`` and stops the process.
WATCHED_START = """
import gc, os, pathlib, signal, sys, threading, time
from daemon.cli import main
here = pathlib.Path(sys.argv[1])
def watch():
    while not (here / "delivered").exists():
        time.sleep(0.02)
    (here / "collector").write_text(f"{gc.isenabled()} {gc.get_freeze_count()}")
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
sys.exit(main(["run", "dispatcher", "-c", str(here / "o.yaml")]))
"""


async def test_a_role_runs_with_the_collector_on_and_its_start_frozen(tmp_path, db_url, store):
    """``outboxd run`` turns the collector off for the start (its objects live as long
    as the process); the frame turns it on again once the role is built, with every
    object made so far frozen: a role never runs with the collector off."""
    watched = ("-c", WATCHED_START, str(tmp_path))
    async with one_delivered(tmp_path, db_url, store, *watched) as (proc, _):
        (tmp_path / "delivered").touch()  # the process writes the collector's state, stops
        await asyncio.wait_for(proc.wait(), 60)
    enabled, frozen = (tmp_path / "collector").read_text().split()
    assert enabled == "True"
    assert int(frozen) > 10_000  # the modules, classes and settings of the start


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
