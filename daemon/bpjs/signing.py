"""The headers that authenticate every BPJS Antrean call.

``X-signature = base64(HMAC-SHA256(key=secret, msg=cons_id + "&" + timestamp))``, with
``X-timestamp`` the Unix time in whole seconds as a decimal string. Time is a
parameter, never read here, so tests pass a fixed one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

CONS_ID_HEADER = "X-cons-id"
TIMESTAMP_HEADER = "X-timestamp"
SIGNATURE_HEADER = "X-signature"
USER_KEY_HEADER = "user_key"


def timestamp_text(epoch_seconds: float) -> str:
    """``X-timestamp``'s value: whole seconds since the epoch (UTC), as a decimal string."""
    return str(int(epoch_seconds))


def signature(cons_id: str, secret: str, timestamp: str) -> str:
    """``X-signature``'s value for this consumer at this timestamp."""
    message = f"{cons_id}&{timestamp}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(cons_id: str, secret: str, user_key: str, timestamp: str) -> dict[str, str]:
    """The four authentication headers of one call made at ``timestamp``
    (see ``timestamp_text``)."""
    return {
        CONS_ID_HEADER: cons_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(cons_id, secret, timestamp),
        USER_KEY_HEADER: user_key,
    }


def signature_matches(cons_id: str, secret: str, timestamp: str, value: str | None) -> bool:
    """Whether a received ``X-signature`` is right for this consumer and timestamp
    (constant-time comparison)."""
    if value is None:
        return False
    expected = signature(cons_id, secret, timestamp).encode()
    return hmac.compare_digest(value.strip().encode(), expected)
