"""``POST /webhooks/{name}``: a partner's signed status callback. The signature
is checked first (a bad or stale one: 401, nothing stored but a counter); then
the receipt, the status change and its status event are one transaction in the
store, and a repeated ``webhook-id`` is answered as the first one was."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from daemon.api.context import control_of
from daemon.api.params import json_response
from daemon.api.problems import Problem
from daemon.operator.callbacks import read_call, verify_call
from daemon.webhooks.signing import SignatureError

log = logging.getLogger("outboxd.webhooks")
REFUSED = "refused"


async def receive(request: web.Request) -> web.Response:
    control = control_of(request)
    name = request.match_info["name"]
    settings = control.settings.webhooks.get(name)
    if settings is None:
        raise Problem(404, f"no webhook named {name!r}")
    body = await request.read()
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


def _extra(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("type", "title", "status", "detail")}
