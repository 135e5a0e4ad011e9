from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.models import MODELS
from daemon.store.sync import Store
from tests.services import pg_admin_connect, pg_schema_url
from tests.support.cli import Cli

# The tests start well over a thousand Python processes (outboxd's roles and
# commands, the simulators) and pytest rewrites every test module in each of its
# workers. Where the environment says not to write bytecode (PYTHONDONTWRITEBYTECODE),
# each of them compiled everything again: about 0.3 s of CPU an outboxd process, 4 s
# a worker. Here bytecode is cached, in the ``__pycache__`` folders git ignores, for
# this process, its workers and every process a test starts.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# the store's backends; the PostgreSQL one marked ``postgres`` (``-m "not postgres"``
# runs without a server)
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))
DB_FIXTURES = ("db_url", "empty_url")  # parametrised by backend


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``postgres`` what the backends' marks do not reach: tests asking for
    ``pg_url`` themselves, and those parametrising a database fixture with
    ``"postgres"`` (``indirect=True``)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if "pg_url" in getattr(item, "fixturenames", ()) or any(
            params.get(name) == "postgres" for name in DB_FIXTURES
        ):
            item.add_marker(pytest.mark.postgres)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked ``both_loops`` run on asyncio's event loop and on uvloop (the
    dispatcher's default, whose transports close and fail differently); the
    rest on asyncio's."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if item.get_closest_marker("both_loops") is not None:
        try:
            import uvloop
        except ImportError:  # the asyncio run still happens
            return factories
        factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of this test session's own."""
    schema = f"outboxd_test_{os.getpid()}"
    with pg_admin_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    url = pg_schema_url(schema)
    db = open_database(DatabaseSettings(url=url))
    migrate(db)
    db.close()
    yield url
    with pg_admin_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _truncate_pg(url: str) -> None:
    db = open_database(DatabaseSettings(url=url))
    tables = ", ".join(m._meta.table_name for m in MODELS)
    db.execute_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    db.close()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store URL on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/outbox.db"
        db = open_database(DatabaseSettings(url=url))
        migrate(db)
        db.close()
        return url
    url = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    return url


@pytest.fixture(params=BACKENDS)
def empty_url(request, tmp_path):
    """A URL to a database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    # the test's name and this process's id: pytest-xdist's workers share the server
    schema = f"outboxd_empty_{request.node.name.split('[')[0][-20:]}_{os.getpid()}".lower()
    with pg_admin_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    yield pg_schema_url(schema)
    with pg_admin_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A store on ``db_url``; the model declarations bound to its database for the
    test's own queries (the store binds its own models)."""
    s = Store(open_database(DatabaseSettings(url=db_url)))
    with s.db.bind_ctx(MODELS):
        yield s
    s.close()


@pytest.fixture(autouse=True)
def _model_declarations_unbound_after() -> Iterator[None]:
    """Whatever database a test binds the model declarations to (for its own
    queries), the next test finds them as they were: unbound."""
    before = [model._meta.database for model in MODELS]
    yield
    for model, database in zip(MODELS, before, strict=True):
        model._meta.set_database(database)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``cli(*args, stdin=b"", cwd=None, env=None)``: ``outboxd ARGS`` run in this
    process (``tests/support/cli.py``), answering its exit code, stdout and stderr."""
    return Cli(capsys, monkeypatch)
