"""The control app: one factory that builds the router from the endpoint table,
with the header, host (``daemon.api.origin``: no foreign ``Host``) and problem
middlewares; each endpoint checks its caller, then (a write) where it comes from."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

from aiohttp import web

from daemon.api import intake, messages, overview, processes, visits
from daemon.api import schedules as sched
from daemon.api.access import check_access
from daemon.api.context import CONTROL, Control
from daemon.api.endpoints import API, Endpoint, Handler
from daemon.api.etag import cached_json
from daemon.api.openapi import document
from daemon.api.origin import check_origin, host_middleware
from daemon.api.page import add_page
from daemon.api.params import check_path
from daemon.api.problems import MAX_BODY, problems_middleware
from daemon.config.settings import ControlSettings
from daemon.domain.auth import Role
from daemon.domain.limits import MAX_BATCH
from daemon.runtime.http import runner_options

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def _openapi(request: web.Request) -> web.Response:
    return cached_json(request, document(ENDPOINTS))


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", f"{API}/openapi.json", _openapi, None, "this document", tag="meta"),
    Endpoint(
        "GET", f"{API}/stats", overview.stats, "viewer",
        "per channel: counts by status, due, oldest pending age, success rate",
        query=overview.STATS_QUERY, responses={200: "the figures", 304: "unchanged"},
        tag="stats", cached=True,
    ),
    Endpoint(
        "POST", f"{API}/messages", messages.enqueue, "operator",
        f"enqueue one message or a batch of at most {MAX_BATCH}, idempotent on (channel, key)",
        body=messages.ENQUEUE_BODY,
        responses={201: "stored (some or all new)", 200: "all were there already"},
        tag="messages",
    ),
    *(
        Endpoint(method, f"{API}/schedules{path}", handler, cast(Role, role), summary, query=query,
                 body=body, body_optional=body in (sched.RESUME_BODY, sched.RUN_BODY),
                 responses=responses, tag="schedules",
                 path_params=sched.path_params(path),
                 cached=method == "GET" and 304 in responses)
        for method, path, handler, role, summary, query, body, responses in (
            ("GET", "", sched.list_schedules, "viewer",
             "every schedule, its next fire and last run", (), None,
             {200: "the schedules", 304: "unchanged"}),
            ("POST", "", sched.create, "admin", "add a schedule of the operator's own", (),
             sched.NEW_BODY, {201: "added", 409: "the name is taken"}),
            ("GET", "/{name}", sched.show, "viewer",
             "a schedule, its next fires and its recent runs", (), None,
             {200: "the schedule", 404: "no such schedule"}),
            ("PATCH", "/{name}", sched.edit, "admin",
             "change settings of a schedule of the operator's own", (), sched.CHANGES_BODY,
             {200: "the schedule", 404: "no such schedule", 409: "the file's schedule"}),
            ("DELETE", "/{name}", sched.delete, "admin",
             "remove a schedule of the operator's own (its runs stay)", (), None,
             {204: "removed", 404: "no such schedule", 409: "the file's schedule"}),
            ("POST", "/{name}/pause", sched.pause, "operator", "pause, saying why", (),
             sched.PAUSE_BODY, {200: "paused", 404: "no such schedule"}),
            ("POST", "/{name}/resume", sched.resume, "operator", "resume", (), sched.RESUME_BODY,
             {200: "resumed (or was not paused)", 404: "no such schedule"}),
            ("POST", "/{name}/run", sched.run_now, "operator", "run the job now (manual)", (),
             sched.RUN_BODY, {202: "queued", 404: "no such schedule", 409: "one for this instant"}),
            ("POST", "/{name}/backfill", sched.backfill, "operator",
             "one run per fire of a past range, both ends included", (), sched.RANGE_BODY,
             {202: "queued", 200: "dry run: how many", 404: "no such schedule"}),
            ("GET", "/{name}/runs", sched.runs, "viewer", "the fire ledger, newest first",
             sched.RUNS_QUERY, None,
             {200: "a page", 304: "unchanged", 404: "no such schedule"}),
            ("POST", "/{name}/runs/{id}/cancel", sched.cancel_run, "operator",
             "cancel a run: a queued one at once, a running one by the scheduler running it "
             "(its job stopped, recorded cancelled, not retried)", (), sched.CANCEL_BODY,
             {200: "cancelled (it was queued)", 202: "its scheduler is asked to stop it",
              404: "no such schedule or run", 409: "the run has ended"}),
        )
    ),
    Endpoint(
        "GET", f"{API}/notifications", sched.notifications, "viewer",
        "the notifications sent (alerts firing and resolved, reports), newest first",
        query=sched.NOTIFICATIONS_QUERY, responses={200: "a page", 304: "unchanged"},
        tag="notifications", cached=True,
    ),
    Endpoint(
        "GET", f"{API}/messages", messages.list_messages, "viewer",
        "messages newest first, a page at a time (keyset cursor); the last 7 days unless since",
        query=messages.LIST_QUERY, responses={200: "a page", 304: "unchanged"},
        tag="messages", cached=True,
    ),
    Endpoint(
        "GET", f"{API}/messages/{{id}}", messages.show, "viewer",
        "a message with its timeline: every status event, each attempt's answer, "
        "the operator actions",
        responses={200: "the message", 304: "unchanged", 404: "no such message"},
        path_params=messages.ID_PARAM, tag="messages", cached=True,
    ),
    *(
        Endpoint(
            "POST", f"{API}/messages/{name}", handler, "operator", summary,
            body=messages.ACTION_BODY,
            responses={200: "done (or, dry_run, what would be)",
                       202: "a bulk operation started (Location: its progress)"},
            tag="messages",
        )
        for name, handler, summary in (
            ("retry", messages.retry,
             "make failed, cancelled or pending messages due now, attempts reset"),
            ("cancel", messages.cancel, "cancel pending or failed messages"),
            ("resend", messages.resend, "send sent, confirmed or rejected messages again"),
        )
    ),
    Endpoint(
        "GET", f"{API}/operations/{{id}}", messages.show_operation, "viewer",
        "a bulk operation's progress and result",
        responses={200: "the operation", 304: "unchanged", 404: "no such operation"},
        path_params=messages.ID_PARAM, tag="messages", cached=True,
    ),
    Endpoint(
        "GET", f"{API}/visits", visits.troubled, "viewer",
        "the visits that cannot go on (a step held, failed or cancelled), newest first, "
        "each with why",
        query=visits.TROUBLED_QUERY, responses={200: "a page", 304: "unchanged"},
        tag="visits", cached=True,
    ),
    Endpoint(
        "GET", f"{API}/receipts", visits.receipts, "viewer",
        "partners' callbacks as received (webhook receipts), newest first",
        query=visits.RECEIPTS_QUERY, responses={200: "a page", 304: "unchanged"},
        tag="visits", cached=True,
    ),
    Endpoint(
        "GET", f"{API}/visits/{{kodebooking}}", visits.show, "viewer",
        "a visit's task progress, one per source that has the booking code "
        "(or the one of source)",
        query=visits.VISIT_QUERY,
        responses={200: "the visits", 304: "unchanged", 404: "no such visit"},
        path_params=visits.KODEBOOKING_PARAM, tag="visits", cached=True,
    ),
    Endpoint(
        "GET", f"{API}/processes", processes.list_processes, "viewer",
        "every program supervisord runs, its state, and each outboxd process's /healthz",
        responses={200: "the programs", 304: "unchanged", 503: "supervisord does not answer"},
        tag="processes", cached=True,
    ),
    *(
        Endpoint(
            "POST", f"{API}/processes/{{name}}/{action}", handler, "admin",
            f"{action} a program (GROUP:NAME), waiting until supervisord has",
            responses={200: "done: its state now", 404: "no such program",
                       409: "not possible now (already started, the answering process)",
                       503: "supervisord does not answer"},
            path_params=processes.NAME_PARAM, tag="processes",
        )
        for action, handler in zip(
            processes.ACTIONS, (processes.start, processes.stop, processes.restart), strict=True
        )
    ),
    Endpoint(
        "POST", "/webhooks/{name}", intake.receive, None,
        "a partner's status callback, signed the Standard Webhooks way "
        "(webhook-id, webhook-timestamp, webhook-signature)",
        body={"type": "object", "description": "the partner's JSON"},
        responses={200: "applied", 202: "recorded, nothing to change",
                   400: "not JSON, or nothing at the webhook's pointers",
                   401: "a bad, stale or future signature",
                   404: "no such webhook, or no such message (the receipt is kept)"},
        path_params={"name": {"type": "string"}}, tag="webhooks",
    ),
    Endpoint(
        "GET", f"{API}/audit", overview.audit, "viewer", "operator actions, newest first",
        query=overview.AUDIT_QUERY, responses={200: "a page", 304: "unchanged"}, tag="audit",
        cached=True,
    ),
    Endpoint(
        "GET", f"{API}/me", overview.me, "viewer",
        "who is asking: the token's name and role (local with no tokens configured)",
        responses={200: "the caller"}, tag="meta",
    ),
)  # fmt: skip


def _guarded(endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        check_access(request, endpoint)
        if endpoint.role is not None:
            check_origin(request)
        check_path(request, endpoint.path_params)
        return await endpoint.handler(request)

    handle.__name__ = endpoint.handler.__name__
    return handle


def _route(endpoint: Endpoint, endpoints: Sequence[Endpoint]) -> str:
    """The path as the router matches it: a parameter does not match the name of a
    fixed sibling (``/messages/{id}`` not ``/messages/retry``), so a wrong method
    on the sibling is a 405 naming only its own methods."""
    parts = endpoint.path.split("/")
    for i, part in enumerate(parts):
        if not part.startswith("{"):
            continue
        siblings = sorted(
            {
                other[i]
                for other in (e.path.split("/") for e in endpoints)
                if len(other) == len(parts)
                and other[:i] == parts[:i]
                and other[i + 1 :] == parts[i + 1 :]
                and not other[i].startswith("{")
            }
        )
        if siblings:
            names = "|".join(re.escape(name) for name in siblings)
            parts[i] = "{" + part.strip("{}") + ":(?!(?:" + names + ")(?![^/]))[^/]+}"
    return "/".join(parts)


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def make_runner(app: web.Application, settings: ControlSettings) -> web.AppRunner:
    """The runner that serves the control app: idle connections and slow request
    heads closed after ``control.idle_timeout``, aiohttp's errors logged short
    (``daemon.runtime.http``)."""
    return web.AppRunner(
        app, handler_cancellation=False, **runner_options(settings.idle_timeout, "outboxd.control")
    )


def build_app(
    control: Control, max_body: int, endpoints: Sequence[Endpoint] = ENDPOINTS
) -> web.Application:
    app = web.Application(
        client_max_size=max_body,
        middlewares=[_headers, host_middleware, problems_middleware],
    )
    app[CONTROL] = control
    app[MAX_BODY] = max_body
    for endpoint in endpoints:
        app.router.add_route(endpoint.method, _route(endpoint, endpoints), _guarded(endpoint))
    add_page(app)
    return app
