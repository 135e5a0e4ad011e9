"""``POST /webhooks/{name}``: a partner's signed status callback. Its form is
checked first: a body that is not ``application/json`` is 415, a Standard
Webhooks header given twice or a ``webhook-id`` outboxd cannot keep
(``text_problem``) 400 naming it; then the signature (a bad or stale one: 401,
nothing stored but a counter); then the receipt, the status change and its
status event are one transaction in the store, and a repeated ``webhook-id`` is
answered as the first one was."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from daemon.api.context import control_of
from daemon.api.params import json_response, read_body
from daemon.api.problems import Problem, bad_request
from daemon.domain.limits import WEBHOOK_ID_MAX, text_problem
from daemon.operator.callbacks import read_call, verify_call
from daemon.webhooks.signing import SIGNED_HEADERS, SignatureError

log = logging.getLogger("outboxd.webhooks")
REFUSED = "refused"


async def receive(request: web.Request) -> web.Response:
    control = control_of(request)
    name = request.match_info["name"]
    settings = control.settings.webhooks.get(name)
    if settings is None:
        raise Problem(404, f"no webhook named {name!r}")
    try:
        _check_form(request)
    except Problem as exc:
        control.metrics.webhook_receipts.labels(name, REFUSED).inc()
        log.warning("webhook refused", extra={"webhook": name, "reason": exc.field or "form"})
        raise
    body = await read_body(request)
    try:
        webhook_id = verify_call(settings, request.headers, body, time.time())
    except SignatureError as exc:
        control.metrics.webhook_receipts.labels(name, REFUSED).inc()
        log.warning("webhook refused", extra={"webhook": name, "reason": exc.reason})
        raise Problem(
            401, f"the signature does not hold: {exc}", reason=exc.reason,
            headers={"WWW-Authenticate": 'Signature realm="outboxd"'},
        ) from None  # fmt: skip
    outcome = await control.store.receive_webhook(read_call(name, settings, webhook_id, body))
    result = "replayed" if outcome.replay else outcome.result
    control.metrics.webhook_receipts.labels(name, result).inc()
    if outcome.http_status >= 400:
        detail = {
            "unknown_message": f"no message of channel {settings.channel!r} is the one named: "
            "the receipt is kept for the operator",
        }.get(outcome.result) or str(outcome.answer.get("error") or outcome.result)
        raise Problem(outcome.http_status, detail, **_extra(outcome.answer))
    return json_response(outcome.answer, status=outcome.http_status)


def _check_form(request: web.Request) -> None:
    """What a callback must be before its signature is worth checking: JSON (a
    form or text a browser could send cross-site is never one), each Standard
    Webhooks header once, a ``webhook-id`` the receipt can be kept under."""
    if request.content_type != "application/json":
        raise Problem(
            415, "send the callback as application/json (Standard Webhooks)", field="Content-Type"
        )
    for header in SIGNED_HEADERS:
        if len(request.headers.getall(header, [])) > 1:
            raise bad_request(f"{header}: given more than once", header)
    webhook_id = request.headers.get("webhook-id")
    if webhook_id:  # none: the signature check says it is missing
        problem = text_problem(webhook_id, WEBHOOK_ID_MAX)
        if problem is not None:
            raise bad_request(f"webhook-id {problem}", "webhook-id")


def _extra(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("type", "title", "status", "detail")}
