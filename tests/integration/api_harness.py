"""The control API served over a real socket on 127.0.0.1 for tests: the app the
control role builds, on a real store, with a token per role."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from daemon.api.app import build_app, make_runner
from daemon.api.context import Control
from daemon.config.loader import parse_config
from daemon.config.schedules import definition
from daemon.domain.auth import hash_token
from daemon.runtime.frame import Context
from daemon.runtime.metrics import ControlMetrics, Metrics
from daemon.store.aio import open_async_store

TOKENS = {"viewer": "obx_viewer-token", "operator": "obx_operator-token", "admin": "obx_admin"}
HL7 = (
    "MSH|^~\\&|SIMRS|RS|HIE|HIE|20261201120000||ADT^A01|MSG0001|P|2.5\r"
    "PID|1||12345^^^RS^MR||DOE^JOHN||19800101|M\r"
)

CONFIG = """
database: {url}
timezone: Asia/Jakarta
channels:
  hie: {{kind: mllp, host: 127.0.0.1, port: 2575}}
  hook: {{kind: http, url: "http://127.0.0.1:9/hook"}}
schedules:
  nightly: {{cron: "30 2 * * *", job: purge, options: {{messages_older_than: 30d}}}}
control:
{control}
"""


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    control: Control
    runner: web.AppRunner  # what serves it: its server makes each connection's handler

    async def call(
        self, method: str, path: str, role: str | None = "admin", **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = dict(kwargs.pop("headers", {}))
        if method not in ("GET", "HEAD") and kwargs.get("json") is kwargs.get("data") is None:
            # as the page does: a write says JSON, body or none (no cross-site form can)
            headers.setdefault("Content-Type", "application/json")
        if role is not None:
            headers["Authorization"] = f"Bearer {TOKENS[role]}"
        async with self.session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            text = await response.text()
            body = json.loads(text) if text else None
            return response.status, body, response


@contextlib.asynccontextmanager
async def serve_api(
    db_url: str,
    extra: str = "",
    max_body: int = 64 * 1024,
    *,
    tokens: bool = True,
    control_yaml: str = "",
    seen: list[tuple[str, str, int]] | None = None,
) -> AsyncIterator[Api]:
    """The control app on 127.0.0.1 (a port of its own), on a real store: with a
    token per role (``TOKENS``), or none (``tokens=False``: every caller is
    local, as on a laptop); ``control_yaml``: more lines of the control section;
    ``seen``: each request's method, path and answer appended (what reached it)."""
    lines = ["  tokens:"] + [
        f"    - {{name: {role}-token, role: {role}, sha256: {hash_token(token)}}}"
        for role, token in TOKENS.items()
    ]
    section = ("\n".join(lines) if tokens else "  tokens: []") + "\n" + control_yaml
    settings = parse_config(CONFIG.format(url=db_url, control=section) + extra)
    store = open_async_store(settings.database, in_process=False)
    metrics = Metrics()
    context = Context("control", 0, "test:control.0", settings, store, metrics)
    control = Control(context, ControlMetrics(metrics.registry))
    app = build_app(control, max_body)
    if seen is not None:
        app.middlewares.insert(0, _recorder(seen))
    runner = make_runner(app, settings.control)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await store.sync_file_schedules(
        {name: definition(spec) for name, spec in settings.schedules.items()}
    )
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", session, control, runner)
    await runner.cleanup()
    await store.aclose()


def _recorder(seen: list[tuple[str, str, int]]) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        seen.append((request.method, request.path, response.status))
        return response

    return record
