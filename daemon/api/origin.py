"""Where a request may come from, whatever the auth mode: the control API answers
only to the ``Host`` names it listens on or is given (``control.allowed_hosts``),
and a request that changes something must come from the page's own origin or from
no browser at all.

A browser lets a page on any site send a form (``application/x-www-form-urlencoded``,
``multipart/form-data``, ``text/plain``) to any address, loopback included, with no
question asked; with no tokens configured such a form would act as ``local``. A
page cannot send ``Content-Type: application/json`` or a header of its choosing to
another origin without the browser asking the server first (a CORS preflight,
which this server never grants), and a browser says where a request comes from
(``Sec-Fetch-Site``, ``Origin``). So a write (any method but GET and HEAD) is:

| what the request says | answer |
|---|---|
| ``Sec-Fetch-Site`` other than ``same-origin`` or ``none`` | 403 |
| ``Origin`` that is not this host and port, nor an allowed name (``null`` too) | 403 |
| neither ``Content-Type: application/json`` nor ``X-Requested-With``, body or none | 415 |

A page on another name that the attacker's DNS points at 127.0.0.1 (DNS
rebinding) is same-origin to the browser but sends its own name in ``Host``: any
request whose ``Host`` is not one of the control API's names is 400. Its names:
the address listened on (``control.host``), ``localhost`` and the loopback
addresses when that is a loopback or a wildcard address, any IP address and this
machine's host name when it is a wildcard (``0.0.0.0``, ``::``), and
``control.allowed_hosts``. A request with no ``Host`` (HTTP/1.0, no browser) is
let through. The ``Host`` rule holds for every request (``host_middleware``),
the write rule for every endpoint that needs a role, once the caller is known
(``check_origin``: without a token, 401 comes first). Partners' webhooks are
signed and read no token: only the ``Host`` rule holds for them (the intake
wants JSON).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache, lru_cache
from urllib.parse import urlsplit

from aiohttp import web

from daemon.api.context import control_of
from daemon.api.problems import Handler, Problem, problem_response
from daemon.config.loader import is_loopback
from daemon.config.settings import ControlSettings
from daemon.domain.fields import host_name

SAFE_METHODS = frozenset({"GET", "HEAD"})
WRITE_HEADER = "X-Requested-With"  # a header a cross-site form cannot send
SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of the page itself, or typed
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Names:
    """The names a request's ``Host`` may give."""

    names: frozenset[str]
    loopback: bool  # any loopback address
    any_address: bool  # any IP address (listening on a wildcard address)
    configured: frozenset[str] = frozenset()  # control.allowed_hosts: a proxy's public names

    def allow(self, name: str) -> bool:
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return self.any_address or (self.loopback and address.is_loopback)


@cache
def _machine_name() -> str:
    return socket.gethostname().lower()


def names_of(host: str, allowed: Collection[str]) -> Names:
    """The names of a control API listening on ``host`` with ``allowed`` besides."""
    names = set(allowed)
    wildcard = host.strip("[]") in WILDCARDS
    local = wildcard or is_loopback(host)
    if local:
        names.add("localhost")
    if wildcard:
        names.add(_machine_name())
    else:
        with contextlib.suppress(ValueError):  # checked as a host already: a name or an address
            names.add(host_name(host))
    return Names(frozenset(names), local, wildcard, frozenset(allowed))


_last: list[
    tuple[ControlSettings, Names]
] = []  # the settings last asked about (a reload replaces them)


def _names(settings: ControlSettings) -> Names:
    if not _last or _last[0][0] is not settings:
        _last[:] = [(settings, names_of(settings.host, settings.allowed_hosts))]
    return _last[0][1]


@lru_cache(maxsize=256)  # a client sends the same Host and Origin request after request
def _authority(text: str) -> tuple[str, int | None] | None:
    """The host name (as compared) and port of a ``Host`` value; None for one that is not."""
    try:
        parts = urlsplit("//" + text)
        port = parts.port
        name = host_name(parts.hostname or "")
    except ValueError:
        return None
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return name, port


def _refused(status: int, detail: str, field: str) -> Problem:
    return Problem(status, detail, field=field)


def host_problem(request: web.Request, names: Names) -> Problem | None:
    given = request.headers.getall("Host", [])
    if len(given) > 1:
        return _refused(400, "Host: given more than once", "Host")
    if not given:
        return None
    authority = _authority(given[0])
    if authority is None:
        return _refused(400, f"Host: {given[0][:80]!r} is not a host name", "Host")
    if not names.allow(authority[0]):
        return _refused(
            400,
            f"Host: {authority[0][:80]!r} is not a name this control API answers to "
            "(behind a reverse proxy, add it to control.allowed_hosts)",
            "Host",
        )
    return None


def check_origin(request: web.Request) -> None:
    """Refuse a write that comes from another site, or could (a form): raise
    the problem (see the module's table). Called once the caller is known, so a
    request without a token is a 401 first."""
    if request.method in SAFE_METHODS:
        return
    problem = origin_problem(request, _names(control_of(request).settings.control))
    if problem is not None:
        raise problem


def origin_problem(request: web.Request, names: Names) -> Problem | None:
    """Why a write is refused for where it comes from, or None."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.strip().lower() not in SAME_SITE:
        return _refused(
            403,
            f"a {fetch_site[:40]} request may not change anything here: use the admin "
            "page of this address, or a client that is not a browser",
            "Sec-Fetch-Site",
        )
    origins = request.headers.getall("Origin", [])
    if len(origins) > 1:
        return _refused(400, "Origin: given more than once", "Origin")
    if origins and not _same_origin(origins[0], request.headers.get("Host"), names):
        return _refused(
            403,
            f"Origin {origins[0][:80]!r} is not this control API's: a page of another site "
            "may not change anything here",
            "Origin",
        )
    if request.content_type != "application/json" and not request.headers.get(WRITE_HEADER):
        return _refused(
            415,
            f"send Content-Type: application/json with every {request.method} (with a body "
            f"or none), or an {WRITE_HEADER} header: what a form of another site cannot send",
            "Content-Type",
        )
    return None


@lru_cache(maxsize=256)
def _origin_parts(origin: str) -> tuple[str, str, int | None] | None:
    """The scheme, host name (as compared) and port of an ``Origin``; None for one
    that is not a web origin (``null``, ``file://``, a path)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
        name = host_name(parts.hostname or "")
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or parts.path not in ("", "/"):
        return None
    return parts.scheme, name, port


def _same_origin(origin: str, host: str | None, names: Names) -> bool:
    """Whether ``origin`` is the host and port the request was sent to, or one of
    ``control.allowed_hosts`` (behind a reverse proxy that sends a ``Host`` of its
    own). Not another port of the same host: another program there is another site."""
    parts = _origin_parts(origin)
    if parts is None:
        return False
    scheme, name, port = parts
    default = DEFAULT_PORTS[scheme]
    authority = _authority(host) if host is not None else None
    if authority is not None and authority[0] == name:
        return (port or default) == (authority[1] or default)
    return name in names.configured


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request to a name that is not the API's, before anything else."""
    problem = host_problem(request, _names(control_of(request).settings.control))
    if problem is not None:
        return problem_response(problem.status, problem.detail, field=problem.field)
    return await handler(request)
