"""A partner's status callback, before the store: its Standard Webhooks
signature checked with the webhook's secrets (any of them, while they rotate)
and its JSON body read at the webhook's pointers into what
``Store.receive_webhook`` takes. Pure: no I/O, no web framework."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from daemon.domain import jsontext
from daemon.domain.jsonpointer import resolve, scalar_text
from daemon.domain.limits import KEY_MAX, PARTNER_TEXT_MAX, text_problem
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
    document, has no key (or partner's id) or status at the webhook's pointers,
    or text there that outboxd does not keep (``text_problem``: a NUL, a line
    break, too long), is a call with its ``problem`` and the pointer at fault
    (``field``): the store keeps it as ``unreadable``."""
    call = WebhookCall(webhook=name, webhook_id=webhook_id, channel=settings.channel, body=body)
    try:
        document: Any = jsontext.loads(body)
    except jsontext.NotJson as exc:
        return replace(call, problem=f"the body is not JSON: {exc}")
    status = scalar_text(resolve(document, settings.status))
    pointer = settings.message_key or settings.message_ref or ""
    what = "message key" if settings.message_key is not None else "partner's id"
    named = scalar_text(resolve(document, pointer))
    if not named:
        shown = status if status is None or text_problem(status, PARTNER_TEXT_MAX) is None else None
        return replace(call, partner_status=shown, problem=f"no {what} at {pointer}", field=pointer)
    limit = KEY_MAX if settings.message_key is not None else PARTNER_TEXT_MAX
    bad = text_problem(named, limit)
    if bad is not None:
        return replace(call, problem=f"the {what} at {pointer} {bad}", field=pointer)
    if status is None:
        return replace(call, problem=f"no status at {settings.status}", field=settings.status)
    bad = text_problem(status, PARTNER_TEXT_MAX)
    if bad is not None:
        return replace(
            call, problem=f"the status at {settings.status} {bad}", field=settings.status
        )
    return replace(
        call,
        partner_status=status,
        outcome=settings.statuses.get(status),
        message_key=named if settings.message_key is not None else None,
        message_ref=named if settings.message_ref is not None else None,
        ref_pointer=settings.id_pointer,
    )
