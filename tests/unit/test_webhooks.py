"""A partner's callback before the store (``daemon.operator.callbacks``): the signature
checked with the webhook's secrets, each refusal with its reason, and the body
read at the webhook's pointers. The ``standardwebhooks`` package is the oracle
for what a partner's library sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from daemon.config.settings import WebhookSettings
from daemon.operator.callbacks import read_call, verify_call
from daemon.webhooks.signing import SignatureError, signed_headers

OLD_KEY = b"the old key of the filing partner"
NEW_KEY = b"the new key of the filing partner"
OLD = "whsec_" + base64.b64encode(OLD_KEY).decode()
NEW = "whsec_" + base64.b64encode(NEW_KEY).decode()
AT = 1_780_000_000
BODY = json.dumps({"data": {"key": "inv-7", "id": "S-1"}, "status": "ACCEPTED"}).encode()


def webhook(**changes) -> WebhookSettings:
    fields = {
        "secret": NEW,
        "channel": "filings",
        "message_key": "/data/key",
        "statuses": {"ACCEPTED": "confirmed", "REFUSED": "rejected"},
    }
    return WebhookSettings.model_validate({**fields, **changes})


def by_hand(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """What a partner computes, written out from the specification."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{digest}",
    }


def test_a_signature_computed_by_hand_verifies():
    assert verify_call(webhook(), by_hand(NEW_KEY, "msg_1", AT, BODY), BODY, AT) == "msg_1"


def test_the_reference_library_signs_what_we_verify_and_verifies_what_we_sign():
    now = datetime.now(UTC).replace(microsecond=0)
    theirs = Webhook(NEW).sign("msg_lib", now, BODY.decode())
    headers = {
        "webhook-id": "msg_lib",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": theirs,
    }
    assert verify_call(webhook(), headers, BODY, now.timestamp()) == "msg_lib"
    ours = signed_headers([NEW_KEY], "msg_ours", int(time.time()), BODY)
    assert Webhook(NEW).verify(BODY, ours) == json.loads(BODY)


def test_while_rotating_the_old_and_the_new_secret_are_both_taken():
    rotating = webhook(secret=None, secrets=[OLD, NEW])
    for key in (OLD_KEY, NEW_KEY):
        assert verify_call(rotating, by_hand(key, "msg_1", AT, BODY), BODY, AT) == "msg_1"
    with pytest.raises(SignatureError) as caught:
        verify_call(webhook(), by_hand(OLD_KEY, "msg_1", AT, BODY), BODY, AT)  # new only
    assert caught.value.reason == "no_match"


def test_several_signatures_in_the_header_one_matching_is_enough():
    stranger = by_hand(b"someone else", "msg_1", AT, BODY)["webhook-signature"]
    ours = by_hand(NEW_KEY, "msg_1", AT, BODY)["webhook-signature"]
    for listed in (f"{stranger} {ours}", f"{ours} {stranger}", f"v2,xyz {stranger} {ours}"):
        headers = by_hand(NEW_KEY, "msg_1", AT, BODY) | {"webhook-signature": listed}
        assert verify_call(webhook(), headers, BODY, AT) == "msg_1"


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"webhook-signature": "v1,AAAA"}, "no_match", "no signature matches"),
        ({"webhook-id": "msg_2"}, "no_match", "no signature matches"),
        ({"webhook-id": ""}, "missing_header", "missing webhook-id header"),
        ({"webhook-timestamp": "soon"}, "bad_timestamp", "not a Unix time"),
        ({"webhook-timestamp": str(AT - 301)}, "stale", "too old"),
        ({"webhook-timestamp": str(AT + 301)}, "future", "in the future"),
    ],
)
def test_each_refusal_has_its_reason(change: dict[str, str], reason: str, words: str):
    headers = by_hand(NEW_KEY, "msg_1", AT, BODY) | change
    with pytest.raises(SignatureError, match=words) as caught:
        verify_call(webhook(), headers, BODY, AT)
    assert caught.value.reason == reason


def test_missing_headers_are_named():
    with pytest.raises(SignatureError) as caught:
        verify_call(webhook(), {"webhook-id": "msg_1"}, BODY, AT)
    assert caught.value.reason == "missing_header"
    assert str(caught.value) == "missing webhook-timestamp and webhook-signature header"


def test_a_wrong_body_is_refused():
    headers = by_hand(NEW_KEY, "msg_1", AT, BODY)
    with pytest.raises(SignatureError) as caught:
        verify_call(webhook(), headers, BODY + b" ", AT)
    assert caught.value.reason == "no_match"


def test_the_webhooks_tolerance_both_ways():
    narrow = webhook(tolerance="1m")
    for stamp, reason in (
        (AT - 60, None),
        (AT + 60, None),
        (AT - 61, "stale"),
        (AT + 61, "future"),
    ):
        headers = by_hand(NEW_KEY, "msg_1", stamp, BODY)
        if reason is None:
            assert verify_call(narrow, headers, BODY, AT) == "msg_1"
        else:
            with pytest.raises(SignatureError) as caught:
                verify_call(narrow, headers, BODY, AT)
            assert caught.value.reason == reason


# --- reading the body -------------------------------------------------------------------


def test_read_by_key():
    call = read_call("filer", webhook(), "msg_1", BODY)
    assert (call.webhook, call.webhook_id, call.channel) == ("filer", "msg_1", "filings")
    assert (call.message_key, call.message_ref, call.problem) == ("inv-7", None, None)
    assert (call.partner_status, call.outcome, call.body) == ("ACCEPTED", "confirmed", BODY)


def test_read_by_the_partners_id():
    settings = webhook(message_key=None, message_ref="/data/id", id_pointer="/submission/id")
    call = read_call("filer", settings, "msg_1", BODY)
    assert (call.message_key, call.message_ref, call.ref_pointer) == (None, "S-1", "/submission/id")


def test_an_unmapped_status_reads_as_no_outcome():
    body = json.dumps({"data": {"key": "inv-7"}, "status": "IN_REVIEW"}).encode()
    call = read_call("filer", webhook(), "msg_1", body)
    assert (call.partner_status, call.outcome, call.problem) == ("IN_REVIEW", None, None)


def test_pointers_with_escapes_and_numbers():
    settings = webhook(message_key="/a~1b/0", status="/st~0")
    body = json.dumps({"a/b": [42], "st~": 7}).encode()
    call = read_call("filer", settings, "msg_1", body)
    assert (call.message_key, call.partner_status) == ("42", "7")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[" * 100_000, "the body is not JSON"),
        (b'{"status": "ACCEPTED"}', "no message key at /data/key"),
        (b'{"data": {"key": ""}, "status": "ACCEPTED"}', "no message key at /data/key"),
        (b'{"data": {"key": {"x": 1}}, "status": "ACCEPTED"}', "no message key at /data/key"),
        (b'{"data": {"key": true}, "status": "ACCEPTED"}', "no message key at /data/key"),
        (b'{"data": {"key": "k"}}', "no status at /status"),
        (b'{"data": {"key": "k"}, "status": null}', "no status at /status"),
        # JSON that parsers read differently, or text outboxd does not keep
        (b'{"data": {"key": "k"}, "status": NaN}', "the body is not JSON: NaN"),
        (b'{"data": {"key": "k"}, "data": {"key": "j"}, "status": "A"}', "the body is not JSON"),
        (b'{"data": {"key": "k\\u0000"}, "status": "ACCEPTED"}', "the message key at /data/key"),
        (b'{"data": {"key": "k\\tk"}, "status": "ACCEPTED"}', "the message key at /data/key"),
        (b'{"data": {"key": "%s"}, "status": "A"}' % (b"k" * 256), "the message key at /data/key"),
        (b'{"data": {"key": "k"}, "status": "A\\u0000"}', "the status at /status holds"),
        (b'{"data": {"key": "k"}, "status": " A"}', "the status at /status begins"),
    ],
)
def test_a_body_that_cannot_be_read_says_why(body: bytes, problem: str):
    call = read_call("filer", webhook(), "msg_1", body)
    assert call.problem is not None and call.problem.startswith(problem), call.problem
    assert call.outcome is None and call.message_key is None
    if "at /" in problem:
        assert call.field == problem.split(" at ")[1].split()[0]


def test_the_docs_partner_example_signs_what_we_verify():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    [example] = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "webhook-id" in b]
    scope: dict[str, object] = {}
    exec(example.replace('"whsec_…"', repr(NEW)), scope)
    body, headers = scope["body"], scope["headers"]
    assert verify_call(webhook(), headers, body, time.time()) == headers["webhook-id"]
