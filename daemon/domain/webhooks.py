"""A partner's status callback as the store takes it, and what it did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class WebhookCall:
    """A partner's callback whose signature holds, read: which message it is
    about (``message_key`` on ``channel``, or the partner's id ``message_ref``
    found at ``ref_pointer`` in the answer kept when a message was sent), the
    partner's status and what it means (``outcome``: confirmed, rejected, or
    None for a status the webhook does not map). ``problem``: why the body could
    not be read, when it could not, and ``field`` where (the pointer at fault)."""

    webhook: str
    webhook_id: str
    channel: str
    body: bytes
    partner_status: str | None = None
    outcome: str | None = None
    message_key: str | None = None
    message_ref: str | None = None
    ref_pointer: str = "/id"
    problem: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class WebhookOutcome:
    """What a callback did and the answer to give (the first one's, for a repeat:
    ``replay``)."""

    receipt_id: int
    result: str  # applied | unchanged | unmapped_status | unknown_message | unreadable
    http_status: int
    answer: dict[str, Any]
    message_id: int | None
    replay: bool


@dataclass(frozen=True)
class WebhookReceiptRow:
    id: int
    webhook: str
    webhook_id: str
    received_at: datetime
    partner_status: str | None
    result: str
    message_id: int | None
    answer_status: int
    answer: dict[str, Any]
    body: str
    body_size: int
