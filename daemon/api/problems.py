"""Errors as ``application/problem+json`` (RFC 9457): a status, a title, a detail
and, where one is at fault, the field or parameter that is."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon.domain.errors import Refused

log = logging.getLogger("outboxd.api")

PROBLEM = "application/problem+json"
MAX_BODY = web.AppKey("max_body", int)  # control.max_body, as the app was built with
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raised by a handler: answered as a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.close = close  # the connection closed after the answer
        self.extra = extra


def bad_request(detail: str, field: str | None = None) -> Problem:
    return Problem(400, detail, field=field)


STATUS_OF = {"usage": 400, "data": 400, "missing": 404, "conflict": 409}  # by Refused.kind


def refused(exc: Refused, naming: bool = False) -> Problem:
    """An operator's request refused, as a problem: its status by the kind of
    refusal, its field; ``naming``: the detail begins with the field (for a
    reason that does not say where, ``required``)."""
    detail = f"{exc.field or 'body'}: {exc}" if naming else str(exc)
    return Problem(STATUS_OF.get(exc.kind, 400), detail, field=exc.field)


def problem_response(
    status: int,
    detail: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update(extra)
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error of the API as a problem document; an unexpected one logged, 500."""
    if not _ours(request):
        return await handler(request)
    try:
        return await handler(request)
    except Refused as exc:  # as the operator layer words it
        return _answer(refused(exc))
    except Problem as exc:
        return _answer(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY]
        return problem_response(413, f"the request body is larger than {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = {
            404: f"no such resource: {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        return problem_response(exc.status, detail, headers=_kept(exc.headers))
    except Exception:
        log.exception("internal error", extra={"method": request.method, "path": request.path})
        return problem_response(500, "an internal error: the control role's log has it")


def _answer(exc: Problem) -> web.Response:
    response = problem_response(
        exc.status, exc.detail, field=exc.field, headers=exc.headers, **exc.extra
    )
    if exc.close:
        response.force_close()
    return response


def _ours(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/webhooks/"))


def _kept(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() == "allow"}
