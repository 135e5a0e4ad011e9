"""The control API's messages and webhooks over a real socket, on SQLite and
PostgreSQL: pages that lose and repeat nothing, a timeline, retry/cancel/resend
by ids and by filter with a dry run, leased messages left alone, the audit, and
partners' signed callbacks (good, bad, stale, future, replayed, rotated, unknown)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.messages import Delivered, Failed, NewMessage
from daemon.store.aio import AsyncStore
from daemon.webhooks.signing import secret_key, signed_headers
from tests.integration.api_harness import Api, serve_api

OLD = "whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LWtleQ=="
NEW = "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LWtleTE="
WEBHOOKS = f"""
webhooks:
  taxoffice:
    secrets: ["{OLD}", "{NEW}"]
    channel: hook
    message_key: /submission/ref
    status: /status
    statuses: {{ACCEPTED: confirmed, REJECTED: rejected}}
"""


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serve_api(db_url, WEBHOOKS) as api:
        yield api


@pytest.fixture
def store(api: Api) -> AsyncStore:
    """The API's own store: one database per process (the models' proxy)."""
    return api.control.store


async def _messages(
    store: AsyncStore, n: int, channel: str = "hook", at: datetime | None = None
) -> None:
    await store.enqueue_many(
        [NewMessage(channel, f"m{i:03d}", b'{"n": %d}' % i) for i in range(n)],
        actor="test",
        now=at,
    )


async def _deliver(
    store: AsyncStore, keys: set[str], failed: bool = False, failing: frozenset[str] = frozenset()
) -> None:
    """Claim the channel's messages; those of ``keys`` delivered (or, ``failed``,
    failed), those of ``failing`` failed; the rest stay leased to ``w``."""
    claimed = await store.claim(["hook"], "w", 500, 60)
    outcome: list[Delivered | Failed] = []
    for c in claimed:
        if c.key in failing or (failed and c.key in keys):
            outcome.append(Failed(c.id, "partner said no"))
        elif c.key in keys:
            outcome.append(Delivered(c.id, '{"ok": true}'))
    await store.record("w", outcome)


# --- listing and showing ----------------------------------------------------------------


async def test_pages_newest_first_lose_and_repeat_nothing(api: Api, store: AsyncStore):
    same = datetime.now(UTC) - timedelta(minutes=5)
    await _messages(store, 23, at=same)  # one creation time for all: the id breaks the tie
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        path = "/api/v1/messages?channel=hook&limit=10" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await api.call("GET", path, role="viewer")
        assert status == 200, body
        seen += [m["id"] for m in body["items"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 23 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    status, body, _ = await api.call("GET", "/api/v1/messages?key=m00&channel=hook")
    assert sorted(m["key"] for m in body["items"]) == [f"m{i:03d}" for i in range(10)]


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ("status=bogus", "status", "not one of"),
        ("channel=nosuch", "channel", "unknown channel 'nosuch'"),
        ("key=m0", "key", "needs its channel"),
        ("limit=0", "limit", "outside 1..500"),
        ("cursor=garbage", "cursor", "cursor"),
        ("since=yesterday", "since", "ISO 8601"),
        ("chanel=hook", "chanel", "unknown query parameter"),
    ],
)
async def test_a_bad_listing_parameter_is_a_400_naming_it(api: Api, query, field, says):
    status, body, _ = await api.call("GET", "/api/v1/messages?" + query)
    assert status == 400 and body["field"] == field and says in body["detail"], body


async def test_a_message_with_its_timeline_and_the_actions_on_it(api: Api, store: AsyncStore):
    await _messages(store, 1)
    await _deliver(store, {"m000"}, failed=True)
    [item] = (await api.call("GET", "/api/v1/messages?status=failed"))[1]["items"]
    status, body, _ = await api.call("POST", "/api/v1/messages/retry", role="operator",
                                     json={"ids": [item["id"]]})  # fmt: skip
    assert status == 200 and body["changed"] == [item["id"]]
    status, shown, response = await api.call("GET", f"/api/v1/messages/{item['id']}")
    assert status == 200 and shown["payload"] == '{"n": 0}' and shown["status"] == "pending"
    assert [(e["from"], e["to"]) for e in shown["events"]] == [
        (None, "pending"), ("pending", "sending"), ("sending", "failed"), ("failed", "pending"),
    ]  # fmt: skip
    assert "partner said no" in json.dumps(shown["events"][2]["details"])
    [action] = shown["actions"]
    assert (action["actor"], action["action"], action["changed"]) == (
        "api:operator-token", "retry", 1
    )  # fmt: skip
    status, _, _ = await api.call(
        "GET", f"/api/v1/messages/{item['id']}", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert status == 304
    status, body, _ = await api.call("GET", "/api/v1/messages/999999")
    assert status == 404 and "no message with id 999999" in body["detail"]
    status, body, _ = await api.call("GET", "/api/v1/messages/abc")
    assert status == 400 and body["field"] == "id"


# --- retry, cancel, resend ----------------------------------------------------------------


async def test_a_dry_run_counts_and_changes_nothing_then_the_action_does(
    api: Api, store: AsyncStore
):
    await _messages(store, 6)
    await _deliver(store, {"m000", "m001", "m002"}, failed=True)
    selector = {"filter": {"channel": "hook", "status": ["failed"]}}
    status, dry, _ = await api.call(
        "POST", "/api/v1/messages/retry", json={**selector, "dry_run": True}
    )
    assert status == 200 and dry["dry_run"] and dry["matched"] == 3 and dry["changed"] == []
    assert len(dry["sample"]) == 3
    _, listed, _ = await api.call("GET", "/api/v1/messages?status=failed")
    assert len(listed["items"]) == 3  # nothing moved
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    assert audit["items"] == []  # a dry run is not an action
    status, done, _ = await api.call("POST", "/api/v1/messages/retry", json=selector)
    assert status == 200 and sorted(done["changed"]) == sorted(dry["sample"])
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    [entry] = audit["items"]
    assert entry["action"] == "retry" and entry["changed"] == 3
    assert entry["actor"] == "api:admin-token" and "hook" in json.dumps(entry["details"])


async def test_a_message_being_sent_is_left_alone_and_said_so(api: Api, store: AsyncStore):
    await _messages(store, 2)
    await store.claim(["hook"], "busy-dispatcher", 1, 300)  # one under a live lease
    status, body, _ = await api.call(
        "POST", "/api/v1/messages/cancel", json={"filter": {"channel": "hook"}}
    )
    assert status == 200, body
    assert len(body["changed"]) == 1 and body["skipped"] == {"sending": 1}


@pytest.mark.parametrize(
    ("action", "body", "field", "says"),
    [
        ("retry", {"filter": {"status": ["sent"]}}, "filter.status", "resend"),
        ("retry", {"filter": {"status": "bogus"}}, "filter.status[0]", "'pending'"),
        ("retry", {"ids": [1], "filter": {"channel": "hook"}}, "filter", "not both"),
        ("retry", {"filter": {"channel": "nosuch"}}, "filter.channel", "unknown channel"),
        ("retry", {"filter": {"chanel": "hook"}}, "filter.chanel", "unknown field"),
        ("retry", {"filter": {}}, "filter", "at least one"),
        ("retry", {}, None, "with ids, or a filter"),
        ("cancel", {"ids": [0]}, "ids[0]", "greater than or equal to 1"),
        ("cancel", {"ids": [1, 2**63]}, "ids[1]", "less than or equal to"),
        (
            "resend",
            {"filter": {"channel": "hook", "key": "m"}, "dry_run": True},
            "filter.status",
            "needs the statuses",
        ),
        ("resend", {"filter": {"channel": "hook"}}, "filter.status", "needs the statuses"),
        ("retry", {"ids": "1"}, "ids", "list"),
        ("retry", {"filter": {"channel": "hook"}, "dry_run": "yes"}, "dry_run", "bool"),
    ],
)
async def test_an_action_asked_wrongly_is_a_400_and_changes_nothing(
    api: Api, store: AsyncStore, action, body, field, says
):
    await _messages(store, 1)
    status, answer, _ = await api.call("POST", f"/api/v1/messages/{action}", json=body)
    assert status == 400, answer
    assert answer.get("field") == field and says in answer["detail"], answer
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    assert audit["items"] == []


async def test_resend_sends_a_sent_message_again(api: Api, store: AsyncStore):
    await _messages(store, 1)
    await _deliver(store, {"m000"})
    [item] = (await api.call("GET", "/api/v1/messages?status=sent"))[1]["items"]
    status, body, _ = await api.call("POST", "/api/v1/messages/resend", role="operator",
                                     json={"ids": [item["id"]]})  # fmt: skip
    assert status == 200 and body["changed"] == [item["id"]]
    _, shown, _ = await api.call("GET", f"/api/v1/messages/{item['id']}")
    assert shown["status"] == "pending" and shown["key"] == "m000"


# --- webhooks ----------------------------------------------------------------------------


def _signed(body: bytes, secret: str = NEW, webhook_id: str = "msg_1", at: float | None = None):
    stamp = int(at if at is not None else time.time())
    return signed_headers([secret_key(secret)], webhook_id, stamp, body)


async def _post(api: Api, body: bytes, headers: dict[str, str], name: str = "taxoffice"):
    return await api.call(
        "POST", f"/webhooks/{name}", role=None, data=body,
        headers={**headers, "Content-Type": "application/json"},
    )  # fmt: skip


async def test_a_signed_callback_confirms_once_and_a_replay_changes_nothing(
    api: Api, store: AsyncStore
):
    await _messages(store, 2)
    await _deliver(store, {"m000", "m001"})
    body = json.dumps({"submission": {"ref": "m000"}, "status": "ACCEPTED"}).encode()
    status, first, _ = await _post(api, body, _signed(body))
    assert status == 200 and first["result"] == "applied" and first["status"] == "confirmed"
    _, shown, _ = await api.call("GET", f"/api/v1/messages/{first['message']}")
    assert shown["status"] == "confirmed" and shown["events"][-1]["actor"] == "webhook:taxoffice"
    status, again, _ = await _post(api, body, _signed(body))  # the same webhook-id
    assert status == 200 and again == first
    rejected = json.dumps({"submission": {"ref": "m001"}, "status": "REJECTED"}).encode()
    status, answer, _ = await _post(api, rejected, _signed(rejected, OLD, "msg_2"))  # old secret
    assert status == 200 and answer["status"] == "rejected"
    _, listed, _ = await api.call("GET", "/api/v1/messages?channel=hook")
    assert sorted(m["status"] for m in listed["items"]) == ["confirmed", "rejected"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda body: _signed(body, "whsec_" + "d3JvbmctZGVmaW5pdGVseS13cm9uZy1rZXk="), "no_match"),
        (lambda body: _signed(body, at=time.time() - 600), "stale"),
        (lambda body: _signed(body, at=time.time() + 600), "future"),
        (lambda body: {}, "missing_header"),
        (lambda body: {**_signed(body), "webhook-timestamp": "soon"}, "bad_timestamp"),
        (lambda body: _signed(body + b" "), "no_match"),  # signed another body
    ],
)
async def test_a_bad_signature_is_401_and_nothing_is_stored(
    api: Api, store: AsyncStore, headers, reason
):
    await _messages(store, 1)
    await _deliver(store, {"m000"})
    body = json.dumps({"submission": {"ref": "m000"}, "status": "ACCEPTED"}).encode()
    status, answer, _ = await _post(api, body, headers(body))
    assert status == 401 and answer["reason"] == reason, answer
    assert await store.webhook_receipts() == []
    _, listed, _ = await api.call("GET", "/api/v1/messages?channel=hook")
    assert [m["status"] for m in listed["items"]] == ["sent"]
    value = api.control.metrics.webhook_receipts.labels("taxoffice", "refused")._value.get()
    assert value == 1


async def test_an_unknown_message_is_404_and_its_receipt_kept(api: Api, store: AsyncStore):
    body = json.dumps({"submission": {"ref": "nobody"}, "status": "ACCEPTED"}).encode()
    status, answer, response = await _post(api, body, _signed(body))
    assert status == 404 and response.content_type == "application/problem+json"
    assert "receipt is kept" in answer["detail"]
    [receipt] = await store.webhook_receipts()
    assert receipt.result == "unknown_message" and receipt.webhook_id == "msg_1"
    status, answer, _ = await _post(api, body, _signed(body), name="nosuch")
    assert status == 404 and "no webhook named 'nosuch'" in answer["detail"]


async def test_stats_per_minute_count_what_was_sent_and_failed(api: Api, store: AsyncStore):
    await _messages(store, 5)
    await _deliver(store, {"m000", "m001", "m002"}, failing=frozenset({"m003"}))
    status, body, _ = await api.call("GET", "/api/v1/stats?minutes=60", role="viewer")
    assert status == 200 and len(body["per_minute"]) == 60
    assert sum(m["sent"] for m in body["per_minute"]) == 3
    assert sum(m["failed"] for m in body["per_minute"]) == 1
    assert body["per_minute"][-1]["sent"] + body["per_minute"][-2]["sent"] == 3  # just now
    assert body["delivered_per_minute"] == {"5m": 3 / 5, "60m": 3 / 60}
    status, plain, _ = await api.call("GET", "/api/v1/stats", role="viewer")
    assert "per_minute" not in plain


async def test_a_listing_asked_again_answers_304_while_nothing_changed(api: Api, store: AsyncStore):
    await _messages(store, 3)
    status, body, response = await api.call("GET", "/api/v1/messages?channel=hook")
    assert status == 200 and len(body["items"]) == 3
    tag = response.headers["ETag"]
    status, _, again = await api.call(
        "GET", "/api/v1/messages?channel=hook", headers={"If-None-Match": tag}
    )
    if status == 200:  # the minute turned between the two: the window moved on
        tag = again.headers["ETag"]
        status, _, _ = await api.call(
            "GET", "/api/v1/messages?channel=hook", headers={"If-None-Match": tag}
        )
    assert status == 304
    await _messages(store, 4)  # one more (m003)
    status, body, _ = await api.call(
        "GET", "/api/v1/messages?channel=hook", headers={"If-None-Match": tag}
    )
    assert status == 200 and len(body["items"]) == 4


async def test_a_search_by_text_or_field_lists_and_selects(api: Api, store: AsyncStore):
    from tests.integration.api_harness import HL7

    for i, mrn in enumerate(("12345", "55555", "12345")):
        body = {"channel": "hie", "key": f"s{i}", "payload": HL7.replace("12345", mrn)}
        status, _, _ = await api.call("POST", "/api/v1/messages", "operator", json=body)
        assert status == 201
    status, page, _ = await api.call("GET", "/api/v1/messages?mrn=12345", "viewer")
    assert status == 200 and [m["key"] for m in page["items"]] == ["s2", "s0"]
    assert page["since"] is None
    status, page, _ = await api.call("GET", "/api/v1/messages?q=doe%5Ejohn&limit=1", "viewer")
    assert [m["key"] for m in page["items"]] == ["s2"] and page["next"]
    status, page, _ = await api.call(
        "GET", f"/api/v1/messages?q=doe%5Ejohn&limit=1&cursor={page['next']}", "viewer"
    )
    assert [m["key"] for m in page["items"]] == ["s1"]
    status, problem, _ = await api.call("GET", "/api/v1/messages?q=ab", "viewer")
    assert status == 400 and problem["field"] == "q"
    status, problem, _ = await api.call("GET", "/api/v1/messages?ward=3", "viewer")
    assert status == 400 and problem["field"] == "ward"
    body = {"filter": {"mrn": "12345", "status": ["pending"]}, "dry_run": True}
    status, dry, _ = await api.call("POST", "/api/v1/messages/cancel", "operator", json=body)
    assert status == 200 and dry["matched"] == 2
    body = {"filter": {"control_id": "MSG0001", "q": "55555"}}
    status, done, _ = await api.call("POST", "/api/v1/messages/cancel", "operator", json=body)
    assert status == 200 and done["matched"] == 1
