"""Who may call what: a bearer token from ``control.tokens`` and the role the
endpoint needs (viewer < operator < admin). No token → 401 with
``WWW-Authenticate``; a role too low → 403. With no tokens in the file (only
allowed on a loopback address), every caller is ``local`` with the admin role.
Two ``Authorization`` headers are a 400, whatever they hold. Tokens are never
logged."""

from __future__ import annotations

from aiohttp import web

from daemon.api.context import PRINCIPAL, control_of
from daemon.api.endpoints import Endpoint
from daemon.api.problems import Problem
from daemon.domain.auth import AuthError, Principal, authenticate, permits

LOCAL = Principal("local", "admin")
CHALLENGE = 'Bearer realm="outboxd"'


def check_access(request: web.Request, endpoint: Endpoint) -> None:
    """Set the request's principal or raise the problem that says why not."""
    if endpoint.role is None:
        return
    if len(request.headers.getall("Authorization", [])) > 1:  # which one would be meant?
        raise Problem(400, "Authorization: given more than once", field="Authorization")
    tokens = control_of(request).settings.control.tokens
    if not tokens:
        request[PRINCIPAL] = LOCAL
        return
    try:
        principal = authenticate(request.headers.get("Authorization"), tokens)
    except AuthError as exc:
        error = "invalid_request" if exc.reason != "unknown" else "invalid_token"
        raise Problem(
            401,
            str(exc),
            headers={"WWW-Authenticate": f'{CHALLENGE}, error="{error}"'},
        ) from None
    if not permits(principal.role, endpoint.role):
        raise Problem(
            403,
            f"{endpoint.method} {endpoint.path} needs the {endpoint.role} role; "
            f"token {principal.name!r} has {principal.role}",
        )
    request[PRINCIPAL] = principal
