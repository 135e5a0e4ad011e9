import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict

from daemon.channels.base import Verdict
from daemon.channels.http.rules import (
    MAX_RETRY_AFTER,
    basic_credentials,
    decode_body,
    idempotency_value,
    judge_response,
    parse_retry_after,
    signature,
    signature_matches,
    snippet,
)

NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)


# --- Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("  30 ", 30.0),
        ("Mon, 23 Nov 2026 08:00:45 GMT", 45.0),  # IMF-fixdate
        ("Monday, 23-Nov-26 08:02:00 GMT", 120.0),  # obsolete RFC 850
        ("Mon Nov 23 08:00:10 2026", 10.0),  # asctime, no zone: UTC
        ("Mon, 23 Nov 2026 15:00:05 +0700", 5.0),  # numeric zone honoured
        ("Sun, 22 Nov 2026 08:00:00 GMT", 0.0),  # in the past: now
        ("9" * 40, MAX_RETRY_AFTER),  # absurdly large: clamped
    ],
)
def test_retry_after_forms(value, seconds):
    assert parse_retry_after(value, NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "1.5",
        "+3",
        "30s",
        "0x10",
        "²",
        "Mon, 31 Feb 2026 08:00:00 GMT",
    ],
)
def test_malformed_retry_after_is_ignored(value):
    assert parse_retry_after(value, NOW) is None


def test_retry_after_date_defaults_to_the_clock():
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


# --- signing, credentials, keys ---------------------------------------------------------


def test_signature_is_hex_hmac_sha256_of_the_exact_bytes():
    body = b'{"b": 1,  "a": "\xc3\xa9"}'
    expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert signature(b"k3y", body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("secret", "body", "value", "ok"),
    [
        (b"k", b"x", signature(b"k", b"x"), True),
        (b"k", b"x", f" {signature(b'k', b'x')} ", True),
        (b"k", b"x", signature(b"other", b"x"), False),
        (b"k", b"x", signature(b"k", b"x "), False),
        (b"k", b"x", signature(b"k", b"x").upper(), False),
        (b"k", b"x", None, False),
        (b"k", b"x", "", False),
        (b"k", b"x", "sha256=é", False),
    ],
)
def test_signature_matches(secret, body, value, ok):
    assert signature_matches(secret, body, value) is ok


def test_basic_credentials_are_utf8_base64():
    value = basic_credentials("klinik", "pässwörd:1")
    assert value == "Basic " + base64.b64encode("klinik:pässwörd:1".encode()).decode()


def test_basic_username_with_colon_is_refused():
    with pytest.raises(ValueError, match="must not contain ':'"):
        basic_credentials("a:b", "pw")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("0001K0011124-3", "0001K0011124-3"),
        ("hie:visit/42?x=1", "hie:visit/42?x=1"),
        ("with space", "with%20space"),
        ("naïve", "na%C3%AFve"),
        ("line\r\nInjected: yes", "line%0D%0AInjected:%20yes"),
        ("50% off\t", "50%25%20off%09"),
    ],
)
def test_idempotency_value_is_a_safe_header_value(key, value):
    assert idempotency_value(key) == value


# --- bodies ---------------------------------------------------------------------------


def test_decode_body_uses_the_charset_and_replaces_garbage():
    assert decode_body("café".encode("latin-1"), "latin-1", False) == "café"
    assert decode_body(b"ok \xff", None, False) == "ok \ufffd"
    assert decode_body(b"ok", "no-such-charset", False) == "ok"


def test_truncated_body_drops_a_half_character_and_says_so():
    data = "ab€".encode()[:4]  # the euro sign cut after its first byte
    text = decode_body(data, "utf-8", True)
    assert text.startswith("ab")
    assert "\ufffd" not in text
    assert text.endswith("[truncated: only the first 4 bytes kept]")


def test_snippet_is_one_short_line():
    assert snippet("  field  missing\n\tline 2 ") == "field missing line 2"
    long = snippet("x" * 500, limit=50)
    assert len(long) == 50
    assert long.endswith("…")


# --- judging answers ------------------------------------------------------------------


def judge(status, headers=None, body="", reason="Reason"):
    return judge_response(status, reason, CIMultiDict(headers or {}), body, NOW)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered_with_the_body(status):
    outcome = judge(status, body='{"id": 7}', reason="OK")
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.response == '{"id": 7}'
    assert outcome.detail == f"HTTP {status} OK"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_retry_without_blaming_the_transport(status):
    outcome = judge(status, body="busy")
    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is False
    assert outcome.retry_after is None
    assert outcome.response == "busy"
    assert outcome.detail == f"HTTP {status} Reason"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("17", 17.0), ("retry-after: nope", None), ("Mon, 23 Nov 2026 08:01:00 GMT", 60.0)],
)
def test_retry_honours_retry_after(value, seconds):
    outcome = judge(503, {"retry-after": value})  # looked up case-insensitively
    assert outcome.retry_after == seconds
    if seconds is not None:
        assert f"retry after {seconds:g}s" in outcome.detail


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422, 451])
def test_other_4xx_is_rejected_with_status_and_body(status):
    outcome = judge(status, body='{"error":\n  "field kodebooking missing"}')
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail == f'HTTP {status} Reason: {{"error": "field kodebooking missing"}}'
    assert outcome.response == '{"error":\n  "field kodebooking missing"}'


def test_4xx_without_body_is_just_the_status_line():
    assert judge(404, reason="Not Found").detail == "HTTP 404 Not Found"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_rejected_showing_only_the_target_origin(status):
    location = "https://hooks.example:8443/T0/SECRET-PATH?token=abc"
    outcome = judge(status, {"Location": location}, body="moved")
    assert outcome.verdict is Verdict.REJECTED
    assert "redirect to https://hooks.example:8443 not followed" in outcome.detail
    assert "SECRET" not in outcome.detail
    assert "token" not in outcome.detail


def test_redirect_without_location_or_relative():
    assert "nowhere" in judge(302).detail
    assert "a relative location" in judge(302, {"Location": "/v2/hook"}).detail


@pytest.mark.parametrize("status", [101, 600, 999])
def test_odd_statuses_retry(status):
    outcome = judge(status)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.detail == f"unexpected HTTP status {status}"
