"""The API's endpoints as data: method, path, the role a caller needs, the query
parameters and body it reads, what it answers. The router is built from this
table and so is the OpenAPI document, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from daemon.api.params import Param
from daemon.domain.auth import Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api/v1"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as aiohttp routes it: /api/v1/messages/{id}
    handler: Handler
    role: Role | None  # None: no token needed (the document itself, partners' webhooks)
    summary: str
    query: tuple[Param, ...] = ()
    # the request body: the pydantic model that checks it (or a union of models),
    # whose JSON Schema the document shows; a schema as is for a body no model reads
    body: Any = None
    body_optional: bool = False  # the body may be left out (its fields all have defaults)
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag: str = "api"
    cached: bool = False  # answers with an ETag and 304 to If-None-Match


def route_name(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"
