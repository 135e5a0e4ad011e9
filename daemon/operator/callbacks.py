"""A partner's status callback, before the store: its Standard Webhooks
signature checked with the webhook's secrets (any of them, while they rotate)
and its JSON body read at the webhook's pointers into what
``Store.receive_webhook`` takes. Pure: no I/O, no web framework."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from daemon.domain.jsonpointer import resolve, scalar_text
from daemon.domain.webhooks import WebhookCall
from daemon.webhooks.signing import verify

if TYPE_CHECKING:
    from daemon.config.settings import WebhookSettings


def verify_call(
    settings: WebhookSettings, headers: Mapping[str, str], body: bytes, now: float
) -> str:
    """The callback's ``webhook-id`` when its signature holds for one of the
    webhook's secrets and its timestamp is within the webhook's tolerance;
    ``daemon.webhooks.signing.SignatureError`` (with its ``reason``) otherwise."""
    return verify(settings.keys(), headers, body, now, settings.tolerance)


def read_call(name: str, settings: WebhookSettings, webhook_id: str, body: bytes) -> WebhookCall:
    """What a verified callback asks of the store. A body that is not a JSON
    document, or has no key (or partner's id) at the webhook's pointer, is a
    call with its ``problem``: the store keeps it as ``unreadable``."""
    call = WebhookCall(webhook=name, webhook_id=webhook_id, channel=settings.channel, body=body)
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        return replace(call, problem="the body is not JSON")
    status = scalar_text(resolve(document, settings.status))
    pointer = settings.message_key or settings.message_ref or ""
    named = scalar_text(resolve(document, pointer))
    if not named:
        what = "message key" if settings.message_key is not None else "partner's id"
        return replace(call, partner_status=status, problem=f"no {what} at {pointer}")
    if status is None:
        return replace(call, problem=f"no status at {settings.status}")
    return replace(
        call,
        partner_status=status,
        outcome=settings.statuses.get(status),
        message_key=named if settings.message_key is not None else None,
        message_ref=named if settings.message_ref is not None else None,
        ref_pointer=settings.id_pointer,
    )
