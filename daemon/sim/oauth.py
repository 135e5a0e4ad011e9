"""An OAuth2 token endpoint for the tests and the demo (the client credentials
grant, RFC 6749 §4.4), answering as SATUSEHAT's ``oauth2/v1/accesstoken`` does
by default (``expires_in`` as text, ``token_type`` ``BearerToken``) or as the RFC
shows (``style="rfc"``: numbers, ``Bearer``), faults included.

In a test::

    async with TokenServer({"client": "s3cret"}, lifetime=60) as server:
        ...  # token_url = server.url(); server.issuer.valid(token); server.issuer.fetches

``TokenIssuer`` is the endpoint itself, so the FHIR simulator serves one at its
own ``/oauth2/v1/accesstoken``. The client authenticates by HTTP Basic or by
``client_id`` and ``client_secret`` in the form; ``grant_type`` may come in the
form or the query (SATUSEHAT's URL carries it). A wrong client gets 401
``invalid_client``; a wrong grant 400 ``unsupported_grant_type``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from daemon.sim.server import SimulatorServer


@dataclass
class TokenFaults:
    """Trouble to inject; change the fields between requests."""

    status: int | None = None  # answer every request with this status (503: down)
    retry_after: str | None = None  # with that status
    drop: bool = False  # close the connection without answering
    omit_expires_in: bool = False  # leave expires_in out of the answer
    token_type: str | None = None  # answer this token_type instead of the style's


class TokenIssuer:
    """Clients (id → secret), the tokens given out and when each expires."""

    def __init__(
        self,
        clients: Mapping[str, str],
        lifetime: float = 3600.0,
        style: Literal["satusehat", "rfc"] = "satusehat",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = dict(clients)
        self.lifetime = lifetime
        self.style = style
        self.clock = clock
        self.faults = TokenFaults()
        self.tokens: dict[str, float] = {}  # token → when it expires (clock())
        self.given: list[str] = []  # every token given out, expired ones included
        self.fetches = 0  # requests answered with a token
        self.requests = 0  # requests received, refused and faulted ones included

    def valid(self, token: str) -> bool:
        expires = self.tokens.get(token)
        return expires is not None and self.clock() < expires

    def expire_all(self) -> None:
        """Every token given out stops working now (earlier than it said)."""
        self.tokens.clear()

    def issued(self) -> list[str]:
        return list(self.tokens)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        form = dict(parse_qsl((await request.read()).decode("utf-8", "replace")))
        faults = self.faults
        if faults.drop and request.transport is not None:
            request.transport.close()
            return web.Response()
        if faults.status is not None:
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return web.json_response(
                {"error": "temporarily_unavailable"}, status=faults.status, headers=headers
            )
        if request.method != "POST":
            return web.json_response({"error": "invalid_request"}, status=405)
        grant = form.get("grant_type") or request.query.get("grant_type")
        client = _client(request, form)
        if client is None or not _same(self.clients.get(client[0]), client[1]):
            return web.json_response(
                {"error": "invalid_client", "error_description": "client authentication failed"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="token"'},
            )
        if grant != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.lifetime
        self.given.append(token)
        self.fetches += 1
        return web.json_response(self._answer(token, client[0], form.get("scope")))

    def _answer(self, token: str, client: str, scope: str | None) -> dict[str, Any]:
        life = int(self.lifetime) if self.lifetime >= 1 else self.lifetime
        if self.style == "rfc":
            answer: dict[str, Any] = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": life,
            }
            if scope:
                answer["scope"] = scope
        else:  # as SATUSEHAT's gateway answers: every value text
            answer = {
                "refresh_token_expires_in": "0",
                "token_type": "BearerToken",
                "issued_at": str(int(time.time() * 1000)),
                "client_id": client,
                "access_token": token,
                "application_name": "outboxd-sim",
                "scope": scope or "",
                "expires_in": str(life),
                "refresh_count": "0",
                "status": "approved",
            }
        if self.faults.omit_expires_in:
            answer.pop("expires_in")
        if self.faults.token_type is not None:
            answer["token_type"] = self.faults.token_type
        return answer


def _client(request: web.Request, form: Mapping[str, str]) -> tuple[str, str] | None:
    """(id, secret) from HTTP Basic (each form-urlencoded, RFC 6749 §2.3.1) or the form."""
    authorization = request.headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, secret = decoded.partition(":")
        return (unquote_plus(name), unquote_plus(secret)) if sep else None
    if "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    return None


def _same(expected: str | None, given: str) -> bool:
    return expected is not None and hmac.compare_digest(expected.encode(), given.encode())


class TokenServer(SimulatorServer):
    """A token endpoint alone, on a loopback port (any path)."""

    inspect_path = "/_sim/tokens"
    default_path = "/oauth2/v1/accesstoken"

    def __init__(self, clients: Mapping[str, str], **issuer: Any) -> None:
        super().__init__()
        self.issuer = TokenIssuer(clients, **issuer)

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        return await self.issuer.handle(request)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"fetches": self.issuer.fetches, "requests": self.issuer.requests})
