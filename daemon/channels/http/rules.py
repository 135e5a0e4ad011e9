"""The HTTP channel's wire rules, as pure functions: what the request carries
(idempotency key, HMAC signature) and how an answer becomes an ``Outcome``.

No I/O here, so every rule is tested from a table (tests/unit/test_http_helpers.py).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

from daemon.channels.base import Outcome

IDEMPOTENCY_HEADER = "Idempotency-Key"  # Stripe/IETF-draft name; value: the message's key
SIGNATURE_PREFIX = "sha256="
RESPONSE_LIMIT = 64 * 1024  # bytes of a peer's answer kept as ``Outcome.response``
MAX_RETRY_AFTER = 365 * 86400.0  # a larger Retry-After is clamped to this
RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx
SNIPPET_LENGTH = 200  # characters of a rejection body quoted in the one-line detail

_DELTA_SECONDS = re.compile(r"[0-9]+")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_UNRESERVED_IN_KEY = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def signature(secret: bytes, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body>``: the value of the signature header."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, body: bytes, value: str | None) -> bool:
    """Whether a received signature header value is right for ``body`` (constant time)."""
    if value is None:
        return False
    return hmac.compare_digest(value.strip().encode(), signature(secret, body).encode())


def basic_credentials(username: str, password: str) -> str:
    """An ``Authorization`` value for HTTP Basic (RFC 7617, UTF-8)."""
    if ":" in username:
        raise ValueError("a basic auth username must not contain ':' (RFC 7617)")
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def idempotency_value(key: str) -> str:
    """The message key as a header value: verbatim when it is printable ASCII without
    spaces, otherwise its UTF-8 bytes percent-encoded (so a header can carry any key)."""
    if _PRINTABLE_ASCII.fullmatch(key):
        return key
    return quote(key, safe=_UNRESERVED_IN_KEY)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 10.2.3).

    Accepts delta-seconds (``120``) and an HTTP-date (IMF-fixdate, RFC 850 or asctime;
    a date without a zone is UTC). A date in the past means 0. Anything else is
    malformed and gives ``None`` (the caller then falls back on its own backoff).
    The result is clamped to ``MAX_RETRY_AFTER``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(min(int(text), int(MAX_RETRY_AFTER)))
        return seconds
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)


def decode_body(data: bytes, charset: str | None, truncated: bool) -> str:
    """A response body as text (undecodable bytes replaced); a truncated one ends with
    a marker and loses no half character at the cut."""
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=not truncated)
    if truncated:
        text += f"\n[truncated: only the first {len(data)} bytes kept]"
    return text


def snippet(text: str, limit: int = SNIPPET_LENGTH) -> str:
    """A body squeezed onto one short line for a ``detail``."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _origin(location: str) -> str:
    """Only scheme://host[:port] of a redirect target: its path and query may repeat a
    secret of the configured URL (an http → https redirect of a tokenised path)."""
    parts = urlsplit(location)
    if not parts.scheme or not parts.hostname:
        return "a relative location"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def judge_response(
    status: int,
    reason: str,
    headers: Mapping[str, str],
    body: str,
    now: datetime | None = None,
) -> Outcome:
    """The verdict on an HTTP answer; ``headers`` must look names up case-insensitively.

    2xx delivered; 408, 429 and 5xx retry (honouring Retry-After); 3xx rejected
    (redirects are not followed: a moved webhook is a configuration problem);
    other 4xx rejected; anything else (1xx, >599) retried as a peer oddity.
    """
    status_line = f"HTTP {status} {reason}".rstrip()
    if 200 <= status <= 299:
        return Outcome.delivered(response=body, detail=status_line)
    if status in RETRY_STATUSES or 500 <= status <= 599:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        detail = status_line
        if retry_after is not None:
            detail += f"; peer asked to retry after {retry_after:g}s"
        return Outcome.retry(detail, response=body, retry_after=retry_after)
    if 300 <= status <= 399:
        location = headers.get("Location")
        target = _origin(location) if location else "nowhere (no Location)"
        return Outcome.rejected(
            f"{status_line}: redirect to {target} not followed; fix the channel URL",
            response=body,
        )
    if 400 <= status <= 499:
        detail = f"{status_line}: {snippet(body)}" if body.strip() else status_line
        return Outcome.rejected(detail, response=body)
    return Outcome.retry(f"unexpected HTTP status {status}", response=body)
