from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import peewee as pw
import pytest

from daemon.config.database import DatabaseSettings
from daemon.config.settings import every_kind
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

# pydantic's plugins are not looked for, here as in outboxd's processes
# (``daemon.cli.main``); and the settings' model of every kind is built once per
# test process: a file is then validated by it, not by a model of its own kinds
# built for each file (outboxd's own processes, exec'd by the tests, do that).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
every_kind().model_rebuild()

# the store's backends; the PostgreSQL one marked ``postgres`` (``-m "not postgres"``
# runs without a server)
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))
DB_FIXTURES = ("db_url", "empty_url")  # parametrised by backend


# The seconds the modules whose tests mostly wait (on the suites, roles and schedules
# they start) took in a run of `make test`: an ordering hint only (`in_lanes`).
WAITING_SECONDS = {
    "e2e/test_chaos.py": 84, "e2e/test_suite.py": 78, "e2e/test_tour.py": 65,
    "e2e/test_scale_out.py": 29, "e2e/test_soak.py": 27, "e2e/test_admin_page.py": 18,
    "e2e/test_prometheus_alerts.py": 12, "e2e/test_cross_site.py": 11,
    "e2e/test_monitoring_docs.py": 1, "integration/test_scheduler.py": 154,
    "integration/test_api_schemathesis.py": 57,  # long too, and busy: not to be left last
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``postgres`` what the backends' marks do not reach: tests asking for
    ``pg_url`` themselves, and those parametrising a database fixture with
    ``"postgres"`` (``indirect=True``). Then order the end-to-end tests in two lanes."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if "pg_url" in getattr(item, "fixturenames", ()) or any(
            params.get(name) == "postgres" for name in DB_FIXTURES
        ):
            item.add_marker(pytest.mark.postgres)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = in_lanes(items, min(3, workers - 1), workers)


def in_lanes(items: list[pytest.Item], lanes: int, workers: int) -> list[pytest.Item]:
    """The tests that mostly wait (``WAITING_SECONDS``) in ``lanes`` lanes of about
    equal length, each at the head of one worker's run: xdist's work stealing hands
    each of the ``workers`` a run of the collection in order, and a thief takes the
    end of a worker's run. In collection order the end-to-end tests all fell to the
    first worker, one after the other (five minutes, the last of them alone on an
    idle machine), and the scheduler's to whichever worker had the end. The rest
    keep their order."""
    waiting: dict[str, list[pytest.Item]] = {}
    rest = []
    for item in items:
        path = Path(str(item.path))
        key = f"{path.parent.name}/{path.name}"
        if key in WAITING_SECONDS:
            waiting.setdefault(key, []).append(item)
        else:
            rest.append(item)
    if lanes < 1 or not waiting or not rest:
        return items
    queues: list[list[pytest.Item]] = [[] for _ in range(lanes)]
    lengths = [0] * lanes
    for key in sorted(waiting, key=lambda k: (-WAITING_SECONDS[k], k)):
        shortest = lengths.index(min(lengths))
        queues[shortest].extend(waiting[key])
        lengths[shortest] += WAITING_SECONDS[key]
    out: list[pytest.Item] = []
    for lane, queue in enumerate(queues):
        out.extend(queue)
        # the rest up to where the next worker's run begins
        take = max(0, len(items) * (lane + 1) // workers - len(out)) if lane + 1 < lanes else 0
        out.extend(rest[:take])
        del rest[:take]
    return [*out, *rest]


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
def pg_schema() -> str:
    """The PostgreSQL schema of this test session's own (``pg_url``)."""
    return f"outboxd_test_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_url(pg_schema: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of this test session's own."""
    with pg_admin_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {pg_schema}")
    url = pg_schema_url(pg_schema)
    db = open_database(DatabaseSettings(url=url))
    migrate(db)
    db.close()
    yield url
    with pg_admin_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")


# The store's tables, each after the tables whose rows name its rows (a foreign key),
# the tallies last: the messages' delete trigger writes them.
EMPTIED = [m._meta.table_name for m in reversed(pw.sort_models(MODELS))]
EMPTIED.sort(key=lambda table: table.endswith("tally"))


@pytest.fixture(scope="session")
def pg_emptier(pg_url: str, pg_schema: str) -> Iterator[Callable[[], None]]:
    """Empties the session's schema, its sequences back at 1, as ``TRUNCATE ...
    RESTART IDENTITY`` would: with ``DELETE`` on one connection, a few milliseconds,
    where a ``TRUNCATE`` of every table (new files for each, a new connection each
    time) took about 70 ms of the server's CPU, before each of several hundred
    tests."""
    conn = pg_admin_connect()
    conn.execute(f"SET search_path TO {pg_schema}")
    delete = "".join(f"DELETE FROM {table};" for table in EMPTIED)
    restart = (
        "SELECT setval(s.oid, 1, false) FROM pg_class s JOIN pg_namespace n"
        " ON n.oid = s.relnamespace WHERE s.relkind = 'S' AND n.nspname = %s"
    )

    def empty() -> None:
        with conn.transaction():
            conn.execute(delete)
            conn.execute(restart, (pg_schema,))

    yield empty
    conn.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database, closed (its WAL checkpointed into the file),
    that each test's database is a copy of."""
    path = tmp_path_factory.mktemp("template") / "outbox.db"
    db = open_database(DatabaseSettings(url=f"sqlite:///{path}"))
    migrate(db)
    db.close()
    assert not path.with_name("outbox.db-wal").exists(), "the WAL is in the file"
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store URL on each backend."""
    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "outbox.db")  # 0600 too
        return f"sqlite:///{tmp_path}/outbox.db"
    request.getfixturevalue("pg_emptier")()
    return str(request.getfixturevalue("pg_url"))


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
