"""The control role (``outboxd run control``): the JSON API under ``/api/v1`` on
``control.host:control.port``, beside the health and metrics port every role has
(``roles.control.base_port``). Each request is one step of the operator layer
(``daemon.operator``), the same ones the CLI takes; its one loop carries on the
bulk operations requests start. Its /metrics adds the queue gauges and the
programs' states, read at each scrape (``daemon.api.scrape``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from aiohttp import web

from daemon.api.app import build_app, make_runner
from daemon.api.context import Control as ControlContext
from daemon.api.scrape import ScrapeGauges
from daemon.config.settings import Settings
from daemon.domain.errors import StoreUnavailable
from daemon.operator.bulk import paced_batch
from daemon.roles.tallies import tallies_child
from daemon.runtime.frame import ChildSpec, Context, RoleBase, TaskChild, bind_listeners
from daemon.runtime.metrics import ControlMetrics

log = logging.getLogger("outboxd.control")
OPERATIONS_POLL = 5.0  # seconds between looks for bulk operations another process started


class Control(RoleBase):
    def __init__(self, context: Context) -> None:
        self.ctx = context
        self.runner: web.AppRunner | None = None
        self.metrics = ControlMetrics(context.metrics.registry)
        self.api = ControlContext(context, self.metrics)
        self.gauges = ScrapeGauges(self.metrics, context.store)

    async def before_scrape(self) -> None:
        """The queue gauges, read from the database now (each an index range read),
        and every program's state, asked of supervisord (``daemon.api.scrape``)."""
        await self.gauges.update(list(self.ctx.settings.channels))

    def children(self, settings: Settings) -> list[ChildSpec]:
        return [
            ChildSpec("operations", (), lambda: TaskChild("operations", self._advance)),
            tallies_child(self.ctx.store),
        ]

    async def _advance(self) -> None:
        """Bulk operator actions, a batch (its own transaction) at a time with a
        pause as long as the batch took (``daemon.operator.bulk``), so that
        delivery goes on beside them; those a stopped process left are taken up
        again."""
        while True:
            try:
                running = await self.ctx.store.operations(limit=100, running=True)
                for operation in reversed(running):  # oldest first
                    view = await paced_batch(self.ctx.store, operation.id)
                    if view is not None and view.state != "running":
                        log.info(
                            "operation finished",
                            extra={"operation": view.id, "action": view.action,
                                   "done": view.done, "state": view.state},
                        )  # fmt: skip
            except StoreUnavailable as exc:
                log.warning("operations wait for the database", extra={"error": str(exc)})
                running = []
            if running:
                continue
            self.api.operations_due.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.api.operations_due.wait(), OPERATIONS_POLL)

    @staticmethod
    def bind(settings: Settings, process_num: int) -> list[socket.socket]:
        """The control API's sockets, bound by the frame at start (with the health
        port, before the database wait): a port in use ends the process at once."""
        host, port = settings.control.host, settings.control.port + process_num
        where = f"control.port + process number {process_num}"
        return bind_listeners(host, port, "the control API", where)

    async def open(self) -> None:
        settings = self.ctx.settings.control
        runner = make_runner(build_app(self.api, settings.max_body), settings)
        await runner.setup()
        try:
            for sock in self.ctx.listeners:
                await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.runner = runner
        host, port = settings.host, settings.port + self.ctx.process_num
        log.info("control API", extra={"listen": f"http://{host}:{port}/api/v1/"})

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.shutdown()
            await self.runner.cleanup()
