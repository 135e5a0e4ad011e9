"""The frame every role stands on: signals, the store, the health and metrics
server, and the role's named children, supervised, drained and reloaded.

A role declares its children from the settings (``Role.children``): each a name
(``channel hie``), the part of the settings it is built from, and how to build
it. A child starts its tasks, drains within a deadline and says what is wrong
with it. The frame:

- binds ``roles.ROLE.host``:``base_port`` + process number first (a port in use
  is a ``StartupError`` at once: exit 69 within supervisord's startsecs), and the
  role's own listeners when its class has ``bind(settings, process_num)`` (the
  control API: ``Context.listeners``), builds the role (its constructor touches
  no database), serves ``/healthz`` and ``/metrics`` there and answers 503 on the
  role's own listeners, waits for the database (backing off), then opens the role
  (``Role.open``: the control API served) and starts every child; a role may add
  GET routes of its own beside /healthz (``Role.add_routes``). These are served by
  ``daemon.runtime.plainhttp``, not a web framework: a role that needs none (the
  dispatcher, the poller) loads none;
- ``/healthz`` says ready (200, ``"status": "ok"``) only while the role runs:
  until it is open and every child started it answers 503 ``"starting"`` (with
  ``waiting for the database since …`` and the last error while it waits), and
  from the moment it begins to stop, 503 ``"stopping"`` (so ``outboxd status
  --wait`` never calls ready a process whose API or loops are not up yet, or
  no longer);
- watches every child's tasks: one that ends on its own stops the role loudly
  (exit 1), instead of leaving it half alive;
- SIGTERM/SIGINT: stops taking work and drains every child within the role's
  ``drain_timeout``, then exits 0;
- SIGHUP: reads the YAML file again off the event loop. A file with errors is
  refused and the running settings stay; otherwise children whose settings
  changed are drained and built again, those removed drained, those added
  started. Every value the file changed is logged by its YAML path, old → new,
  secrets masked (``reload: channels.hie.rate: 20/s → 5/s``; one read at start
  only, a warning saying so), and each child rebuilt with what changed in it
  (``channel hie changed: rate 20/s → 5/s``).

Signal handlers only set events; the frame's main coroutine acts on them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daemon.config.errors import ConfigError
from daemon.config.loader import load_config
from daemon.config.settings import RoleSettings, Settings
from daemon.domain.errors import StartupError, StoreUnavailable
from daemon.resilience.backoff import Backoff
from daemon.runtime import collector
from daemon.runtime.metrics import Metrics
from daemon.runtime.plainhttp import Key, Request, Response, Routes, Server
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.spawn import Spawned

log = logging.getLogger("outboxd.frame")
HEALTH_TIMEOUT = 2.0  # seconds /healthz waits for the database's answer
HEALTH_IDLE = 15.0  # seconds an idle connection to /healthz and /metrics stays open
MAX_PORT = 65535
Phase = Literal["starting", "running", "stopping"]
# what /healthz says (503) outside the running phase
PHASE_PROBLEMS: dict[Phase, str] = {
    "starting": "starting: the role's listeners and loops are not all up yet",
    "stopping": "stopping: draining its loops",
}


class Child(Protocol):
    """A named part of a role: a loop per channel, per source, a side task."""

    def start(self) -> Collection[asyncio.Task[Any]]:
        """Start; the frame watches the tasks returned (they end only when drained)."""
        ...

    async def drain(self, timeout: float) -> None:
        """Stop taking work, finish or release what is in flight within ``timeout``."""
        ...

    def problems(self) -> list[str]:
        """What is wrong right now, for /healthz; empty when healthy."""
        ...


@dataclass(frozen=True)
class ChildSpec:
    name: str  # e.g. "channel hie": in logs and health problems
    config: object  # what the child is built from; a change rebuilds it on reload
    build: Callable[[], Child]


class Role(Protocol):
    def children(self, settings: Settings) -> list[ChildSpec]:
        """The children these settings call for (asked at start and on every reload)."""
        ...

    def problems(self) -> list[str]:
        """Problems of the role beyond its children's."""
        ...

    def add_routes(self, routes: Routes) -> None:
        """GET routes of the role's own beside /healthz and /metrics (a handler
        finds the frame as ``request.app[FRAME]``)."""
        ...

    async def open(self) -> None:
        """What the role serves itself, opened before its children start (a port
        it cannot bind: raise ``StartupError``, the process exits 69)."""
        ...

    async def close(self) -> None:
        """Close what ``open`` opened, after the children drained."""
        ...

    async def before_scrape(self) -> None:
        """Bring gauges read from elsewhere (the database) up to date for /metrics."""
        ...


class RoleBase:
    """Defaults for the optional parts of ``Role``."""

    def problems(self) -> list[str]:
        return []

    def add_routes(self, routes: Routes) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def before_scrape(self) -> None:
        return None


@dataclass
class Context:
    """What a role gets from the frame."""

    role: str
    process_num: int
    owner: str  # unique per process: node, pid, role and number
    settings: Settings  # the running settings (replaced on a reload)
    store: AsyncStore
    metrics: Metrics
    listeners: list[socket.socket] = field(default_factory=list)  # the role's ``bind``


RoleFactory = Callable[[Context], Role]


@dataclass(frozen=True)
class Waiting:
    """The wait for the database at start: since when (Unix time), the last error."""

    since: float
    error: str = ""


class TaskChild:
    """A child that is one task: a coroutine running until it is cancelled at drain."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self.task: asyncio.Task[None] | None = None

    def start(self) -> list[asyncio.Task[None]]:
        self.task = asyncio.create_task(self._run(), name=self.name)
        return [self.task]

    async def drain(self, timeout: float) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def problems(self) -> list[str]:
        return [f"{self.name} stopped"] if self.task is not None and self.task.done() else []


def owner_id(node: str, role: str, process_num: int) -> str:
    """Who holds a lease: ``node:pid:role.n``, unique across the hosts sharing a
    database while each has a node name of its own."""
    return f"{node}:{os.getpid()}:{role}.{process_num}"


def bind_listeners(host: str, port: int, what: str, where: str) -> list[socket.socket]:
    """Listening sockets on every address ``host`` names (as asyncio's
    ``create_server`` binds them), for ``what``; one that cannot be bound (a port
    in use) is a ``StartupError`` naming the address and ``where`` it is set (exit 69)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(
            f"cannot serve {what} on {host}:{port}: {exc.strerror or exc} ({where})"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(
            f"cannot serve {what} on {host}:{port}: {why or exc} ({where})"
        ) from None
    return sockets


class NoHealthPort(StartupError):
    """The role's base port and the process number give no port."""


def health_address(settings: Settings, role: str, process_num: int) -> tuple[str, int]:
    """Where a role's process serves /healthz; a number that gives no port is refused."""
    role_settings: RoleSettings = getattr(settings.roles, role)
    port = role_settings.base_port + process_num
    if process_num < 0 or port > MAX_PORT:
        raise NoHealthPort(
            f"no health port for process number {process_num}: roles.{role}.base_port "
            f"{role_settings.base_port} + {process_num} is not a port (1-{MAX_PORT})"
        )
    return role_settings.host, port


class Children:
    """A role's running children: started from its specs, watched, rebuilt on a
    reload where their settings changed (logged with what changed), drained."""

    def __init__(self, role: Role, role_name: str) -> None:
        self.role = role
        self.role_name = role_name
        self.running: dict[str, tuple[ChildSpec, Child, list[asyncio.Task[Any]]]] = {}
        self.broken: dict[str, str] = {}  # a child a reload could not build: why

    def get(self, name: str) -> Child | None:
        entry = self.running.get(name)
        return entry[1] if entry is not None else None

    def start(self, settings: Settings) -> None:
        for spec in self.role.children(settings):
            self._start(spec)

    def _start(self, spec: ChildSpec) -> None:
        child = spec.build()
        tasks = list(child.start())
        self.running[spec.name] = (spec, child, tasks)

    async def drain(self, timeout: float, names: list[str] | None = None) -> None:
        """Drain these children (all by default) at once, each within ``timeout``;
        their tasks still running afterwards are cancelled."""
        chosen = list(self.running) if names is None else names
        entries = [self.running.pop(name) for name in chosen if name in self.running]
        await asyncio.gather(*(child.drain(timeout) for _, child, _ in entries))
        tasks = [task for _, _, ts in entries for task in ts]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self, *events: asyncio.Event) -> tuple[str, asyncio.Task[Any]] | None:
        """Wait for one of ``events`` or for a child's task to end; return one that ended."""
        owners = {task: name for name, (_, _, ts) in self.running.items() for task in ts}
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            done, _ = await asyncio.wait([*owners, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        ended = [task for task in owners if task in done]
        return (owners[ended[0]], ended[0]) if ended else None

    async def reload(self, settings: Settings) -> None:
        """Apply new (valid) settings: drain what was removed or changed, build what
        changed or was added; each logged, a change with what changed."""
        wanted = {spec.name: spec for spec in self.role.children(settings)}
        removed = [name for name in self.running if name not in wanted]
        retried = [spec for name, spec in wanted.items() if name in self.broken]
        changed = {
            name: spec
            for name, spec in wanted.items()
            if name in self.running and self.running[name][0].config != spec.config
        }
        added = [
            spec
            for name, spec in wanted.items()
            if name not in self.running and name not in self.broken
        ]
        for name in removed:
            log.info("%s removed", name)
        for name, spec in changed.items():
            from daemon.config.diff import changes  # at a reload

            what = ", ".join(changes(self.running[name][0].config, spec.config)) or "rebuilt"
            log.info("%s changed: %s", name, what)
        timeout = getattr(settings.roles, self.role_name).drain_timeout
        await self.drain(timeout, [*removed, *changed])
        self.broken = {name: why for name, why in self.broken.items() if name in wanted}
        for spec in [*changed.values(), *retried, *added]:
            try:
                self._start(spec)
            except Exception as exc:  # the rest run on; /healthz names this one
                log.exception("%s could not be started", spec.name)
                self.broken[spec.name] = f"{type(exc).__name__}: {exc}"
                continue
            self.broken.pop(spec.name, None)
            if spec in added:
                log.info("%s added", spec.name)
        log.info(
            "reloaded",
            extra={"added": len(added), "changed": len(changed), "removed": len(removed)},
        )

    def problems(self) -> list[str]:
        out = list(self.role.problems())
        for _, child, _ in self.running.values():
            out += child.problems()
        out += [f"{name}: not running ({why})" for name, why in sorted(self.broken.items())]
        return out


class Frame:
    def __init__(
        self,
        role: str,
        process_num: int,
        config_path: str | None,
        settings: Settings,
        spawned: Spawned | None = None,
    ) -> None:
        self.role_name = role
        self.spawned = spawned  # a store worker started ahead, for the store to take over
        self.process_num = process_num
        self.config_path = config_path
        self.settings = settings
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.metrics = Metrics()
        self.children: Children | None = None
        self.role: Role | None = None
        self.store: AsyncStore | None = None
        self.context: Context | None = None
        self.listeners: list[socket.socket] = []  # the role's own, bound at start
        # starting → running (the role open, every child started) → stopping
        self.phase: Phase = "starting"
        self.waiting: Waiting | None = None  # while the database is waited for at start

    @property
    def role_settings(self) -> RoleSettings:
        return getattr(self.settings.roles, self.role_name)

    async def run(self, factory: RoleFactory) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        try:
            return await self._run(factory)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _run(self, factory: RoleFactory) -> int:
        host, port = health_address(self.settings, self.role_name, self.process_num)
        # bound before anything else, so a port in use ends the process at once (well
        # within supervisord's startsecs: the program is FATAL, not restarted forever)
        sockets = self._bind_health(host, port)
        try:
            # a role's own listeners too (the control API), before the database wait
            bind = getattr(factory, "bind", None)
            self.listeners = bind(self.settings, self.process_num) if bind else []
            try:
                return await self._run_bound(factory, sockets, host, port)
            finally:
                for sock in self.listeners:
                    sock.close()
        finally:
            for sock in sockets:
                sock.close()

    async def _run_bound(
        self, factory: RoleFactory, sockets: list[socket.socket], host: str, port: int
    ) -> int:
        logging_settings = self.settings.logging
        store = open_async_store(
            self.settings.database,
            in_process=getattr(self.role_settings, "store_process", False),
            log_level=logging_settings.level,
            log_format=logging_settings.format,
            process=f"{self.role_name}.{self.process_num}",
            spawned=self.spawned,
            node=self.settings.node,
        )
        self.store = store
        try:
            context = Context(
                self.role_name,
                self.process_num,
                owner_id(self.settings.node, self.role_name, self.process_num),
                self.settings,
                store,
                self.metrics,
                self.listeners,
            )
            self.context = context
            role = factory(context)  # builds nothing that needs the database
            self.role = role
            self.children = Children(role, self.role_name)
            # /healthz answers from now on (503 while the database is waited for),
            # and so do the role's own ports, 503 until the role opens them
            server = await self._serve_health(role, sockets, host, port)
            try:
                placeholder = await self._hold(self.listeners)
                collector.resume()  # the role is built: what the start made lives on
                try:
                    if not await self._wait_for_database(store):
                        return 0
                    await role.open()
                finally:
                    await placeholder.close()
                try:
                    return await self._supervise(self.children)
                finally:
                    await role.close()
            finally:
                await server.close()
        finally:
            await store.aclose()

    # --- start and stop -------------------------------------------------------------

    async def _wait_for_database(self, store: AsyncStore) -> bool:
        """Check the schema, waiting for a database that does not answer yet
        (False when told to stop first); /healthz says since when and why. A
        schema mismatch is raised."""
        backoff = Backoff(1.0)
        since = time.time()
        self.waiting = Waiting(since)
        try:
            while True:
                try:
                    await store.check_schema()
                    return True
                except StoreUnavailable as exc:
                    delay = backoff.next()
                    self.waiting = Waiting(since, str(exc))
                    log.warning(
                        "waiting for the database", extra={"error": str(exc), "retry_in": delay}
                    )
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                    return False
                except TimeoutError:
                    pass
        finally:
            self.waiting = None

    async def _hold(self, listeners: list[socket.socket]) -> Server:
        """Answer on the role's own ports until the role opens them: 503 with
        what it waits for, at once (a client is not left hanging on a socket
        nobody reads). Served on duplicates of the sockets, so that closing
        this leaves them listening for the role."""
        routes = Routes()
        routes.fallback = self._not_yet
        server = Server(routes, HEALTH_IDLE, log)
        await server.start([sock.dup() for sock in listeners])
        return server

    async def _not_yet(self, _: Request) -> Response:
        body = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": f"{self.role_name} is not serving yet: {self._starting_problem()}",
        }
        return Response.json(
            body, 503, content_type="application/problem+json", headers={"Retry-After": "5"}
        )

    def _starting_problem(self) -> str:
        waiting = self.waiting
        if waiting is None:
            return PHASE_PROBLEMS["starting"]
        since = datetime.fromtimestamp(waiting.since, UTC).isoformat(timespec="seconds")
        return f"starting: waiting for the database since {since}" + (
            f" ({waiting.error})" if waiting.error else ""
        )

    async def _supervise(self, children: Children) -> int:
        children.start(self.settings)
        self.phase = "running"
        self.metrics.up.labels(self.role_name).set(1)
        self.metrics.process_info.labels(
            self.settings.node, self.role_name, str(self.process_num)
        ).set(1)
        assert self.store is not None
        log.info(
            "started",
            extra={
                "node": self.settings.node,
                "role": self.role_name,
                "children": len(children.running),
                "loop": type(asyncio.get_running_loop()).__module__.split(".", 1)[0],
                "store": "process" if self.store.runs_in_process else "thread",
            },
        )
        code = 0
        try:
            while not self.stopping.is_set():
                died = await children.wait(self.stopping, self.reload_requested)
                if died is not None:
                    name, task = died
                    log.error(
                        "a loop ended unexpectedly; stopping",
                        extra={"child": name, "task": task.get_name()},
                        exc_info=task.exception() if not task.cancelled() else None,
                    )
                    code = 1
                    break
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    await self._reload(children)
        finally:
            self.phase = "stopping"
            self.metrics.up.labels(self.role_name).set(0)
            timeout = self.role_settings.drain_timeout
            log.info("draining", extra={"deadline_seconds": timeout})
            started = time.monotonic()
            await children.drain(timeout)
            log.info(
                "stopped",
                extra={"exit_code": code, "drain_seconds": round(time.monotonic() - started, 3)},
            )
        return code

    async def _reload(self, children: Children) -> None:
        try:
            settings = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error(
                "reload refused: the config has errors; keeping the running settings",
                extra={"errors": "; ".join(map(str, exc.issues))},
            )
            return
        self._log_changes(settings)
        self.settings = settings
        if self.context is not None:
            self.context.settings = settings
        await children.reload(settings)

    def _log_changes(self, settings: Settings) -> None:
        """Each value the file changed, by its YAML path (``reload: channels.hie.rate:
        20/s → 5/s``); one this role reads at start only, as a warning saying so."""
        from daemon.config.diff import config_changes, restart_only  # at a reload

        found = config_changes(self.settings, settings)
        for change in found:
            if restart_only(change.path, self.role_name):
                log.warning("reload: %s; it takes effect at the next restart", change)
            else:
                log.info("reload: %s", change)
        if not found:
            log.info("reload: the file changes nothing")

    # --- health and metrics ---------------------------------------------------------

    async def _healthz(self, _: Request) -> Response:
        status: str
        if self.phase != "running":  # not ready, whatever the loops say
            problems = [
                self._starting_problem() if self.phase == "starting" else PHASE_PROBLEMS[self.phase]
            ]
            status = self.phase
        else:
            problems = self.children.problems() if self.children is not None else []
            assert self.store is not None
            try:
                await asyncio.wait_for(self.store.ping(), HEALTH_TIMEOUT)
            except Exception as exc:
                problems.append(f"database: {type(exc).__name__}: {exc}")
            status = "ok" if not problems else "unhealthy"
        body = {
            "status": status,
            "node": self.settings.node,
            "role": self.role_name,
            "process": self.process_num,
            "problems": problems,
        }
        return Response.json(body, 200 if not problems else 503)

    async def _metrics(self, _: Request) -> Response:
        if self.role is not None:
            try:
                await asyncio.wait_for(self.role.before_scrape(), HEALTH_TIMEOUT)
            except Exception as exc:  # the rest of the scrape still answers
                log.warning(
                    "metrics not brought up to date",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
        return Response(
            body=generate_latest(self.metrics.registry), content_type=CONTENT_TYPE_LATEST
        )

    def _bind_health(self, host: str, port: int) -> list[socket.socket]:
        where = f"roles.{self.role_name}.base_port + process number {self.process_num}"
        return bind_listeners(host, port, "/healthz", where)

    async def _serve_health(
        self, role: Role, sockets: list[socket.socket], host: str, port: int
    ) -> Server:
        routes = Routes()
        routes.state[FRAME] = self
        routes.add_get("/healthz", self._healthz)
        routes.add_get("/metrics", self._metrics)
        role.add_routes(routes)
        server = Server(routes, HEALTH_IDLE, log)
        await server.start(sockets)
        log.info("health and metrics", extra={"listen": f"http://{host}:{port}"})
        return server


FRAME = Key[Frame]("frame")  # the frame, for a role's handlers


def run_role(
    role: str,
    process_num: int,
    config_path: str | None,
    factory: RoleFactory,
    settings: Settings | None = None,
    spawned: Spawned | None = None,
) -> int:
    """Run ``role`` until it is told to stop, on ``settings`` (else loaded from the
    file: a bad config raises ``ConfigError``, which the CLI reports, exit 78),
    its store worker ``spawned`` ahead when the caller started one."""
    from daemon.domain.logs import setup_logging
    from daemon.runtime import eventloop

    settings = settings or load_config(config_path)
    health_address(settings, role, process_num)  # refused before anything starts
    setup_logging(
        settings.logging.level, settings.logging.format, f"{role}.{process_num}", settings.node
    )
    frame = Frame(role, process_num, config_path, settings, spawned)
    return eventloop.run(frame.run(factory), getattr(settings.roles, role).event_loop)
