"""Standard Webhooks signatures (``daemon.webhooks.signing``) against the reference library
(``standardwebhooks``) as the oracle, both ways, and what our verify refuses.

Our ``verify`` takes the instant it judges at (``now``); the library's reads the
clock, so the messages handed to it are stamped with the current time."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from daemon.webhooks.signing import (
    SECRET_PREFIX,
    TOLERANCE,
    SignatureError,
    new_secret,
    secret_key,
    sign,
    signed_headers,
    verify,
)

# The example of the Standard Webhooks specification (and of its libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

KEY = b"outboxd test key, 32 bytes long!"
SECRET = SECRET_PREFIX + base64.b64encode(KEY).decode()
OTHER_KEY = b"another key, also 32 bytes long."
BODY = json.dumps({"rule": "queue_age:hie", "event": "firing", "text": "ünïcode ✓"}).encode()
AT = 1_780_000_000  # the instant our verify is asked at (seconds)


def headers_at(timestamp: int, *keys: bytes, message_id: str = "msg_1") -> dict[str, str]:
    return signed_headers(list(keys or (KEY,)), message_id, timestamp, BODY)


# --- the specification's example ---------------------------------------------------------


def test_the_specification_example_signs_as_the_library_does() -> None:
    ours = sign(secret_key(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    theirs = Webhook(SPEC_SECRET).sign(
        SPEC_ID, datetime.fromtimestamp(SPEC_TIMESTAMP, UTC), SPEC_BODY.decode()
    )
    assert ours == theirs == SPEC_SIGNATURE


def test_the_specification_example_verifies_at_its_time() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify([secret_key(SPEC_SECRET)], headers, SPEC_BODY, SPEC_TIMESTAMP) == SPEC_ID
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([secret_key(SPEC_SECRET)], headers, SPEC_BODY + b" ", SPEC_TIMESTAMP)


# --- both directions with the library ------------------------------------------------------


def test_ours_verifies_with_the_library() -> None:
    now = int(time.time())
    headers = headers_at(now, message_id="msg_ours")
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)
    # and the library refuses it with another secret, or a changed body
    with pytest.raises(WebhookVerificationError):
        Webhook(base64.b64encode(OTHER_KEY).decode()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"firing", b"resolved"), headers)


def test_ours_with_several_keys_verifies_with_the_library_for_each() -> None:
    headers = headers_at(int(time.time()), OTHER_KEY, KEY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for key in (KEY, OTHER_KEY):
        assert Webhook(key).verify(BODY, headers, json_parse=False) is None


def test_the_librarys_verifies_with_ours() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    signature = Webhook(SECRET).sign("msg_theirs", now, BODY.decode())
    headers = {
        "Webhook-Id": "msg_theirs",  # header names in any case
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": signature,
    }
    assert verify([KEY], headers, BODY, now.timestamp()) == "msg_theirs"
    assert verify([secret_key(SECRET)], headers, BODY, now.timestamp()) == "msg_theirs"
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([OTHER_KEY], headers, BODY, now.timestamp())


def test_our_signature_is_the_librarys_for_the_same_input() -> None:
    at = datetime.fromtimestamp(AT, UTC)
    assert headers_at(AT)["webhook-signature"] == Webhook(KEY).sign("msg_1", at, BODY.decode())


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        SECRET,
        SECRET.removeprefix(SECRET_PREFIX),  # the bare base64 is taken too
        SECRET.rstrip("="),  # unpadded
    ],
)
def test_a_secret_is_whsec_and_the_base64_of_its_key(secret: str) -> None:
    assert SECRET.endswith("=")  # so that the unpadded case is one
    assert secret_key(secret) == KEY
    assert Webhook(secret)._whsecret == KEY  # the library reads it the same


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("whsec_", "may not be empty"),
        ("", "may not be empty"),
        ("whsec_not base64!", "base64 of its key"),
        ("whsec_abcde", "base64 of its key"),  # 5 characters: not a length base64 has
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), "base64 of its key"),
    ],
)
def test_a_secret_that_is_not_one(secret: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        secret_key(secret)


def test_new_secrets_are_whsec_32_random_bytes_and_usable_by_the_library() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert first.startswith(SECRET_PREFIX)
    assert len(secret_key(first)) == 32
    headers = signed_headers([secret_key(first)], "msg_new", int(time.time()), BODY)
    Webhook(first).verify(BODY, headers, json_parse=False)


# --- what our verify refuses ----------------------------------------------------------------


def test_a_changed_body_is_refused() -> None:
    headers = headers_at(AT)
    assert verify([KEY], headers, BODY, AT) == "msg_1"
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([KEY], headers, BODY + b"\n", AT)


@pytest.mark.parametrize(
    ("header", "value"),
    [("webhook-id", "msg_2"), ("webhook-timestamp", str(AT + 1))],
)
def test_a_changed_id_or_timestamp_is_refused(header: str, value: str) -> None:
    headers = headers_at(AT) | {header: value}
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([KEY], headers, BODY, AT)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([OTHER_KEY], headers_at(AT), BODY, AT)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([], headers_at(AT), BODY, AT)


@pytest.mark.parametrize(
    ("stamp", "error"),
    [
        (AT - int(TOLERANCE), None),  # exactly five minutes old: still in
        (AT + int(TOLERANCE), None),  # exactly five minutes ahead: still in
        (AT - int(TOLERANCE) - 1, "too old"),
        (AT + int(TOLERANCE) + 1, "in the future"),
        (AT - 86400, "too old"),
        (AT + 86400, "in the future"),
    ],
)
def test_the_timestamp_tolerance(stamp: int, error: str | None) -> None:
    headers = headers_at(stamp)
    if error is None:
        assert verify([KEY], headers, BODY, AT) == "msg_1"
    else:
        with pytest.raises(SignatureError, match=error):
            verify([KEY], headers, BODY, AT)


def test_a_tolerance_of_its_own() -> None:
    headers = headers_at(AT - 60)
    assert verify([KEY], headers, BODY, AT, tolerance=60) == "msg_1"
    with pytest.raises(SignatureError, match="too old"):
        verify([KEY], headers, BODY, AT, tolerance=59)


def test_a_stale_message_is_refused_even_when_its_signature_holds() -> None:
    with pytest.raises(SignatureError, match="too old"):
        verify([KEY], headers_at(AT - 3600), BODY, AT)


# --- several signatures: secrets rotating ------------------------------------------------------


def test_one_matching_signature_among_several_is_enough() -> None:
    ours = sign(KEY, "msg_1", AT, BODY)
    stranger = sign(OTHER_KEY, "msg_1", AT, BODY)
    for listed in (f"{stranger} {ours}", f"{ours} {stranger}", f"v2,abc {stranger}  {ours}"):
        headers = headers_at(AT) | {"webhook-signature": listed}
        assert verify([KEY], headers, BODY, AT) == "msg_1"


def test_the_receiver_with_old_and_new_secrets_takes_either() -> None:
    for sender in (KEY, OTHER_KEY):
        assert verify([OTHER_KEY, KEY], headers_at(AT, sender), BODY, AT) == "msg_1"
    with pytest.raises(SignatureError):
        verify([b"a third key"], headers_at(AT, KEY, OTHER_KEY), BODY, AT)


def test_only_v1_entries_count() -> None:
    value = sign(KEY, "msg_1", AT, BODY).removeprefix("v1,")
    for listed in (f"v1a,{value}", f"V1,{value}", f"v2,{value}", value):
        headers = headers_at(AT) | {"webhook-signature": listed}
        with pytest.raises(SignatureError, match="no signature matches"):
            verify([KEY], headers, BODY, AT)


# --- headers that are not what they should be ---------------------------------------------------


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_or_empty_header(missing: str) -> None:
    headers = headers_at(AT)
    absent = {k: v for k, v in headers.items() if k != missing}
    for broken in (absent, headers | {missing: ""}):
        with pytest.raises(SignatureError, match="missing"):
            verify([KEY], broken, BODY, AT)


@pytest.mark.parametrize(
    "stamp",
    [f"{AT}.5", f"-{AT}", f" {AT}", "1e9", "١٧٨٠٠٠٠٠٠٠", "9" * 13, "now"],
)
def test_a_timestamp_that_is_not_whole_unix_seconds(stamp: str) -> None:
    headers = headers_at(AT) | {"webhook-timestamp": stamp}
    with pytest.raises(SignatureError, match="not a Unix time"):
        verify([KEY], headers, BODY, AT)


@pytest.mark.parametrize(
    "listed",
    ["v1", "v1,", "v1,not base64!", "v1,====", ",,,", "v1,\x00", "\u2003"],
)
def test_garbage_signatures_are_a_signature_error_and_nothing_else(listed: str) -> None:
    headers = headers_at(AT) | {"webhook-signature": listed}
    with pytest.raises(SignatureError):
        verify([KEY], headers, BODY, AT)
