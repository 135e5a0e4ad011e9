"""The frame every role stands on, with a role of the test's own in this process:
its children started and drained, a route of its own beside /healthz and /metrics,
a child that dies stopping the role loudly, and a reload that rebuilds only what
changed and says what did."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from daemon.config.loader import load_config
from daemon.config.settings import Settings
from daemon.runtime.frame import FRAME, ChildSpec, Context, Frame, RoleBase, TaskChild
from daemon.runtime.plainhttp import Request, Response, Routes
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

CONFIG = """
database: sqlite:///{db}
channels:
  hie: {{kind: mllp, host: 127.0.0.1, port: 9, rate: {rate}}}
  hook: {{kind: http, url: "http://127.0.0.1:9/"}}
roles:
  poller: {{base_port: {port}, drain_timeout: 2s}}
"""


class Toy(RoleBase):
    """A child per channel and one that dies when told; a route /toy."""

    def __init__(self, context: Context) -> None:
        self.ctx = context
        self.built: list[str] = []
        self.drained: list[str] = []
        self.die = asyncio.Event()
        self.explode: set[str] = set()  # children whose build fails

    def children(self, settings: Settings) -> list[ChildSpec]:
        specs = [
            ChildSpec(f"channel {name}", channel, self._child(f"channel {name}"))
            for name, channel in settings.channels.items()
        ]
        return [*specs, ChildSpec("mortal", None, lambda: TaskChild("mortal", self._mortal))]

    def _child(self, name: str) -> Callable[[], TaskChild]:
        def build() -> TaskChild:
            if name in self.explode:
                raise RuntimeError(f"{name} would not build")
            self.built.append(name)
            return Drained(name, self)

        return build

    async def _mortal(self) -> None:
        await self.die.wait()
        raise RuntimeError("the mortal child died")

    def add_routes(self, routes: Routes) -> None:
        async def toy(request: Request) -> Response:
            frame = request.app[FRAME]
            assert frame.children is not None
            return Response.json({"role": frame.role_name, "children": len(frame.children.running)})

        routes.add_get("/toy", toy)


class Drained(TaskChild):
    def __init__(self, name: str, role: Toy) -> None:
        super().__init__(name, lambda: asyncio.sleep(3600))
        self.role = role

    async def drain(self, timeout: float) -> None:
        self.role.drained.append(self.name)
        await super().drain(timeout)


def write(path: Path, port: int, rate: str = "20/s", url: str = "http://127.0.0.1:9/") -> None:
    text = CONFIG.format(db=path.parent / "o.db", port=port, rate=rate)
    path.write_text(text.replace("http://127.0.0.1:9/", url))


async def get(port: int, path: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as r,
    ):
        return r.status, await r.json(content_type=None) if path != "/metrics" else {}


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    path = tmp_path / "o.yaml"
    write(path, port)
    migrate(open_database(load_config(path).database))
    return path, port


async def test_children_routes_reload_and_drain(config, caplog):
    path, port = config
    frame = Frame("poller", 0, str(path), load_config(path))
    roles: list[Toy] = []

    def factory(ctx: Context) -> Toy:
        roles.append(Toy(ctx))
        return roles[-1]

    run = asyncio.create_task(frame.run(factory))
    await eventually(lambda: frame.children is not None and len(frame.children.running) == 3)
    role = roles[0]
    assert await get(port, "/toy") == (200, {"role": "poller", "children": 3})
    status, body = await get(port, "/healthz")
    assert status == 200 and body["status"] == "ok"
    assert (await get(port, "/metrics"))[0] == 200
    # a reload that changes one channel rebuilds that one only, and says what changed
    write(path, port, rate="5/s")
    with caplog.at_level("INFO", logger="outboxd.frame"):
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: "reloaded" in caplog.text)
    assert "channel hie changed: rate 20/s → 5/s" in caplog.text
    assert role.built == ["channel hie", "channel hook", "channel hie"]
    assert role.drained == ["channel hie"]
    # a bad file is refused; the running children stay
    path.write_text(path.read_text() + "bogus: 1\n")
    with caplog.at_level("INFO", logger="outboxd.frame"):
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: "reload refused" in caplog.text)
    assert len(frame.children.running) == 3
    # SIGTERM: every child drained, exit 0
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run, 10) == 0
    assert sorted(role.drained) == ["channel hie", "channel hie", "channel hook"]


async def test_a_child_that_dies_stops_the_role_loudly(config, caplog):
    path, _ = config
    frame = Frame("poller", 0, str(path), load_config(path))
    roles: list[Toy] = []
    run = asyncio.create_task(frame.run(lambda ctx: roles.append(Toy(ctx)) or roles[-1]))
    await eventually(
        lambda: bool(roles) and frame.children is not None and len(frame.children.running) == 3
    )
    with caplog.at_level("INFO", logger="outboxd.frame"):
        roles[0].die.set()
        assert await asyncio.wait_for(run, 10) == 1
    assert "a loop ended unexpectedly; stopping" in caplog.text
    assert "the mortal child died" in caplog.text
    assert sorted(roles[0].drained) == ["channel hie", "channel hook"]  # the rest drained


async def test_no_port_for_a_process_number_is_refused_before_anything_starts(config):
    from daemon.domain.errors import StartupError
    from daemon.runtime.frame import health_address

    path, port = config
    settings = load_config(path)
    assert health_address(settings, "poller", 2) == ("127.0.0.1", port + 2)
    with pytest.raises(StartupError, match="is not a port"):
        health_address(settings, "poller", 70000)
    with pytest.raises(StartupError, match="is not a port"):
        health_address(settings, "poller", -1)


async def test_a_child_a_reload_cannot_build_is_a_health_problem_and_the_rest_run_on(
    config, caplog
):
    path, port = config
    frame = Frame("poller", 0, str(path), load_config(path))
    roles: list[Toy] = []
    run = asyncio.create_task(frame.run(lambda ctx: roles.append(Toy(ctx)) or roles[-1]))
    await eventually(lambda: frame.children is not None and len(frame.children.running) == 3)
    roles[0].explode.add("channel hook")
    write(path, port, url="http://127.0.0.1:10/")
    with caplog.at_level("INFO", logger="outboxd.frame"):
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: "reloaded" in caplog.text)
    assert "channel hook could not be started" in caplog.text
    status, body = await get(port, "/healthz")
    assert status == 503
    assert body["problems"] == [
        "channel hook: not running (RuntimeError: channel hook would not build)"
    ]
    assert not run.done() and frame.children.get("channel hie") is not None
    # the cause mended, the next reload builds it
    roles[0].explode.clear()
    caplog.clear()
    with caplog.at_level("INFO", logger="outboxd.frame"):
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: "reloaded" in caplog.text)
    assert (await get(port, "/healthz"))[0] == 200
    assert frame.children.get("channel hook") is not None
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run, 10) == 0


class Gated(Toy):
    """A role whose own listener opens, and closes, only when the test says."""

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.may_open = asyncio.Event()
        self.may_close = asyncio.Event()
        self.opening = asyncio.Event()
        self.closing = asyncio.Event()

    async def open(self) -> None:
        self.opening.set()
        await self.may_open.wait()

    async def close(self) -> None:
        self.closing.set()
        await self.may_close.wait()


async def test_healthz_says_ready_only_while_the_role_is_open_and_its_children_run(config):
    """/healthz is served from the database wait on, but says "starting" until the
    role is open (the control API served) and every child started, and "stopping"
    from SIGTERM on: `outboxd status --wait` calls no process ready early or late."""
    path, port = config
    frame = Frame("poller", 0, str(path), load_config(path))
    roles: list[Gated] = []
    run = asyncio.create_task(frame.run(lambda ctx: roles.append(Gated(ctx)) or roles[-1]))
    await eventually(lambda: bool(roles) and roles[0].opening.is_set(), "the role opening")
    status, body = await get(port, "/healthz")
    assert (status, body["status"]) == (503, "starting"), body
    assert body["problems"] == ["starting: the role's listeners and loops are not all up yet"]
    assert frame.children is not None and not frame.children.running  # none started yet
    roles[0].may_open.set()
    await eventually(lambda: len(frame.children.running) == 3, "every child started")
    assert await get(port, "/healthz") == (
        200,
        {"status": "ok", "node": frame.settings.node, "role": "poller", "process": 0,
         "problems": []},
    )  # fmt: skip
    os.kill(os.getpid(), signal.SIGTERM)
    await eventually(lambda: roles[0].closing.is_set(), "the role closing")
    status, body = await get(port, "/healthz")
    assert (status, body["status"]) == (503, "stopping"), body
    assert body["problems"] == ["stopping: draining its loops"]
    roles[0].may_close.set()
    assert await asyncio.wait_for(run, 10) == 0


async def test_the_node_names_the_process_in_its_leases_health_metrics_and_logs(config, caplog):
    """``node:`` (a host's name in a suite spread over machines) is in the lease
    owner, /healthz, /metrics and the "started" line; a reload that changes it
    says it takes effect at the next restart."""
    path, port = config
    path.write_text("node: ward-b\n" + path.read_text())
    frame = Frame("poller", 0, str(path), load_config(path))
    contexts: list[Context] = []

    def factory(ctx: Context) -> Toy:
        contexts.append(ctx)
        return Toy(ctx)

    with caplog.at_level("INFO", logger="outboxd.frame"):
        run = asyncio.create_task(frame.run(factory))
        await eventually(lambda: frame.phase == "running", "the role running")
        assert contexts[0].owner == f"ward-b:{os.getpid()}:poller.0"
        status, body = await get(port, "/healthz")
        assert (status, body["node"]) == (200, "ward-b"), body
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
        assert 'outboxd_process_info{node="ward-b",process="0",role="poller"} 1.0' in text
        started = next(r for r in caplog.records if r.getMessage() == "started")
        assert getattr(started, "node", None) == "ward-b"

        path.write_text(path.read_text().replace("node: ward-b", "node: ward-c"))
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: "reloaded" in caplog.text, "the reload")
    assert "reload: node: ward-b → ward-c; it takes effect at the next restart" in caplog.text
    assert contexts[0].owner.startswith("ward-b:"), "a lease owner never changes while it runs"
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run, 10) == 0
