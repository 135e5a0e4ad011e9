"""Standard Webhooks signatures (standardwebhooks.com): what outboxd's signed
notifications carry and what its webhook intake checks.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, HMAC-SHA256,
base64; ``webhook-signature`` lists ``v1,<signature>`` entries separated by
spaces (one per secret, so secrets can rotate); a secret is ``whsec_`` and the
base64 of its key. A receiver accepts a message when any entry matches one of
its secrets (compared in constant time) and the timestamp is within its
tolerance (five minutes either way)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
TOLERANCE = 300.0  # seconds a timestamp may be off, either way
SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


MISSING_HEADER = "missing_header"
BAD_TIMESTAMP = "bad_timestamp"
STALE = "stale"
FUTURE = "future"
NO_MATCH = "no_match"


class SignatureError(ValueError):
    """A message whose signature does not hold: missing headers, a timestamp
    that is not one, stale or in the future, no matching signature. ``reason``
    says which (``missing_header``, ``bad_timestamp``, ``stale``, ``future``,
    ``no_match``), the text in words."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def secret_key(secret: str) -> bytes:
    """The key of a ``whsec_…`` secret; ``ValueError`` for one that is not."""
    text = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ and the base64 of its key") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature entry."""
    # a header's bytes as they came (aiohttp keeps those not UTF-8 as surrogates)
    content = f"{message_id}.{timestamp}.".encode("utf-8", "surrogateescape") + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signed_headers(
    keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, message_id, timestamp, body) for k in keys),
    }


def verify(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = TOLERANCE,
) -> str:
    """The message's ``webhook-id`` when it is signed with one of ``keys`` and its
    timestamp is within ``tolerance`` of ``now``; ``SignatureError`` otherwise.
    Never raises anything else, whatever the headers hold."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    given = lowered.get("webhook-signature", "")
    values = (message_id, stamp, given)
    missing = [name for name, value in zip(SIGNED_HEADERS, values, strict=True) if not value]
    if missing:
        raise SignatureError(MISSING_HEADER, f"missing {' and '.join(missing)} header")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise SignatureError(BAD_TIMESTAMP, "webhook-timestamp is not a Unix time in seconds")
    timestamp = int(stamp)
    if timestamp < now - tolerance:
        raise SignatureError(STALE, "webhook-timestamp is too old")
    if timestamp > now + tolerance:
        raise SignatureError(FUTURE, "webhook-timestamp is in the future")
    offered = []
    for entry in given.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    for key in keys:
        expected = base64.b64decode(sign(key, message_id, timestamp, body)[3:])
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return message_id
    raise SignatureError(NO_MATCH, "no signature matches")
