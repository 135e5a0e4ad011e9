"""What the aiohttp simulators share: listening, the bound port, stopping,
``async with`` and the demo's failure switch. A subclass answers every path with
``_receive`` and serves what it recorded as JSON at ``inspect_path`` with
``_list``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web

from daemon.sim.fail import FailSwitch


class SimulatorServer:
    inspect_path = "/_sim"
    default_path = ""  # what url() appends when given nothing

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self.fail_switch = FailSwitch(None)  # the demo's switch (its --fail-switch FILE)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {type(self).__name__} is not started")
        return self._port

    def url(self, path: str | None = None) -> str:
        return f"http://{self.host}:{self.port}{self.default_path if path is None else path}"

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def _list(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_get(self.inspect_path, self._list)
        app.router.add_route("*", "/{tail:.*}", self._receive)
        # handler_cancellation: a client that gives up cancels a delayed answer, so
        # stop() does not wait for it.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
