"""The daemon runtime every role runs in: signals, drain, reload, the health
and metrics server, and a watch on the role's tasks.

SIGTERM/SIGINT: the role stops taking work, finishes what is in flight within
its drain deadline, releases the rest, and the process exits 0. SIGHUP: the
YAML file is read again; a bad file is refused, logged, and the old settings
are kept. Signal handlers only set flags; the main coroutine acts on them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daemon import eventloop
from daemon.config import ConfigError, load_config
from daemon.errors import StartupError
from daemon.metrics import Metrics
from daemon.settings import RoleSettings, Settings
from daemon.store import Store, StoreUnavailable, open_database
from daemon.store.process import StoreProcess
from daemon.store.thread import StoreRunner, StoreThread

log = logging.getLogger("outboxd.runtime")
HEALTH_TIMEOUT = 2.0


class Role(Protocol):
    """A role's loops, as the runtime drives them."""

    async def start(self) -> list[asyncio.Task[None]]:
        """Start the loops; the runtime watches the tasks returned."""
        ...

    async def drain(self, timeout: float) -> None:
        """Stop taking work, finish or release what is in flight within ``timeout``."""
        ...

    async def reload(self, settings: Settings) -> None:
        """Apply new settings (already validated)."""
        ...

    def problems(self) -> list[str]:
        """What is wrong right now, for /healthz; empty when healthy."""
        ...


@dataclass
class Context:
    """What a role gets from the runtime."""

    role: str
    process_num: int
    owner: str  # unique per process: host, pid, role and number
    settings: Settings
    store: Store
    thread: StoreRunner
    metrics: Metrics


RoleFactory = Callable[[Context], Role]


def owner_id(role: str, process_num: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{role}.{process_num}"


class Runtime:
    def __init__(
        self, role: str, process_num: int, config_path: str | None, settings: Settings
    ) -> None:
        self.role_name = role
        self.process_num = process_num
        self.config_path = config_path
        self.settings = settings
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.metrics = Metrics()

    @property
    def role_settings(self) -> RoleSettings:
        return getattr(self.settings.roles, self.role_name)

    async def run(self, factory: RoleFactory) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        store = Store(open_database(self.settings.database))
        thread = self._store_runner(store)
        try:
            if not await self._wait_for_database(thread):
                return 0
            context = Context(
                self.role_name,
                self.process_num,
                owner_id(self.role_name, self.process_num),
                self.settings,
                store,
                thread,
                self.metrics,
            )
            role = factory(context)
            return await self._serve(role, thread)
        finally:
            await thread.aclose()

    def _store_runner(self, store: Store) -> StoreRunner:
        if not getattr(self.role_settings, "store_process", False):
            return StoreThread(store)
        logging_settings = self.settings.logging
        return StoreProcess(
            store,
            self.settings.database,
            logging_settings.level,
            logging_settings.format,
            f"{self.role_name}.{self.process_num}",
        )

    async def _wait_for_database(self, thread: StoreRunner) -> bool:
        """Check the schema, waiting for a database that does not answer yet
        (False when told to stop first). A schema mismatch is raised."""
        delay = 1.0
        while True:
            try:
                await thread.run(thread.store.check_schema)
                return True
            except StoreUnavailable as exc:
                log.warning(
                    "waiting for the database", extra={"error": str(exc), "retry_in": delay}
                )
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
                return False
            except TimeoutError:
                delay = min(delay * 2, 30.0)

    async def _serve(self, role: Role, thread: StoreRunner) -> int:
        server = await self._start_health_server(role, thread)
        tasks = await role.start()
        self.metrics.up.labels(self.role_name).set(1)
        loop = type(asyncio.get_running_loop()).__module__.split(".", 1)[0]
        store = "process" if isinstance(thread, StoreProcess) else "thread"
        log.info(
            "started",
            extra={"role": self.role_name, "tasks": len(tasks), "loop": loop, "store": store},
        )
        code = 0
        try:
            while not self.stopping.is_set():
                died = await self._wait(tasks)
                if died is not None:
                    log.error(
                        "a loop ended unexpectedly; stopping",
                        extra={"task": died.get_name()},
                        exc_info=died.exception() if not died.cancelled() else None,
                    )
                    code = 1
                    break
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    await self._reload(role)
        finally:
            self.metrics.up.labels(self.role_name).set(0)
            timeout = self.role_settings.drain_timeout
            log.info("draining", extra={"deadline_seconds": timeout})
            await role.drain(timeout)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.cleanup()
            log.info("stopped", extra={"exit_code": code})
        return code

    async def _wait(self, tasks: list[asyncio.Task[None]]) -> asyncio.Task[None] | None:
        """Wait for a signal or for a task to end; return a task that ended."""
        stop = asyncio.ensure_future(self.stopping.wait())
        reload = asyncio.ensure_future(self.reload_requested.wait())
        try:
            done, _ = await asyncio.wait(
                [*tasks, stop, reload], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
            reload.cancel()
        ended = [t for t in tasks if t in done]
        return ended[0] if ended else None

    async def _reload(self, role: Role) -> None:
        try:
            settings = load_config(self.config_path)
        except ConfigError as exc:
            log.error(
                "reload refused: the config has errors; keeping the running settings",
                extra={"errors": "; ".join(map(str, exc.issues))},
            )
            return
        if settings.database != self.settings.database:
            log.warning("the database setting changed; it takes effect at the next restart")
        self.settings = settings
        await role.reload(settings)
        log.info("reloaded", extra={"config": self.config_path})

    async def _start_health_server(self, role: Role, thread: StoreRunner) -> web.AppRunner:
        async def healthz(_: web.Request) -> web.Response:
            problems = list(role.problems())
            try:
                await asyncio.wait_for(thread.run(thread.store.ping), HEALTH_TIMEOUT)
            except Exception as exc:
                problems.append(f"database: {type(exc).__name__}: {exc}")
            body = {
                "status": "ok" if not problems else "unhealthy",
                "role": self.role_name,
                "process": self.process_num,
                "problems": problems,
            }
            return web.Response(
                text=json.dumps(body),
                status=200 if not problems else 503,
                content_type="application/json",
            )

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host = self.role_settings.host
        port = self.role_settings.base_port + self.process_num
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(
                f"cannot serve /healthz on {host}:{port}: {exc.strerror or exc} "
                f"(roles.{self.role_name}.base_port + process number {self.process_num})"
            ) from None
        log.info("health and metrics", extra={"listen": f"http://{host}:{port}"})
        return runner


def run_role(role: str, process_num: int, config_path: str | None, factory: RoleFactory) -> int:
    """Load the settings and run ``role`` until it is told to stop. Exit 78 on a
    bad config (the CLI reports it)."""
    from daemon.logs import setup_logging

    settings = load_config(config_path)
    setup_logging(settings.logging.level, settings.logging.format, f"{role}.{process_num}")
    runtime = Runtime(role, process_num, config_path, settings)
    return eventloop.run(runtime.run(factory), getattr(settings.roles, role).event_loop)
