"""Listing messages and one message's timeline, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import Delivered, Failed, NewMessage, RetryAt
from daemon.domain.selection import InvalidCursor, MessageFilter, OperatorRefused
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def msg(key: str, channel: str = "hie", kind: str = "hl7") -> NewMessage:
    return NewMessage(channel=channel, key=key, payload=f"payload {key}".encode(), kind=kind)


def ids(store: Store, selector: MessageFilter | None = None, **kw) -> list[int]:
    return [m.id for m in store.list_messages(selector, now=NOW, **kw).items]


def test_a_listing_is_newest_first_with_each_filter(store: Store):
    a = store.enqueue(msg("visit-1"), now=at(1)).id
    b = store.enqueue(msg("visit-2", kind="json"), now=at(2)).id
    c = store.enqueue(msg("order-1", channel="webhook", kind="json"), now=at(3)).id
    d = store.enqueue(msg("Visit-3"), now=at(4)).id
    e = store.enqueue(msg("visit_%"), now=at(5)).id
    store.claim(["webhook"], "w", 1, 60, now=at(6))
    store.record("w", [Delivered(c, "ok")], now=at(6))
    store.cancel(MessageFilter(ids=(b,)), now=at(7))
    assert ids(store) == [e, d, c, b, a]
    assert ids(store, MessageFilter(channel="hie")) == [e, d, b, a]
    assert ids(store, MessageFilter(statuses=("sent",))) == [c]
    assert ids(store, MessageFilter(statuses=("sent", "cancelled"))) == [c, b]
    assert ids(store, MessageFilter(channel="hie", statuses=("pending",))) == [e, d, a]
    assert ids(store, MessageFilter(kind="json")) == [c, b]
    assert ids(store, MessageFilter(since=at(2), until=at(4))) == [c, b]
    # a key prefix is case-sensitive and takes % and _ as they are
    assert ids(store, MessageFilter(channel="hie", key_prefix="visit")) == [e, b, a]
    assert ids(store, MessageFilter(channel="hie", key_prefix="visit_")) == [e]
    assert ids(store, MessageFilter(channel="hie", key_prefix="Visit")) == [d]
    assert ids(store, MessageFilter(channel="webhook", key_prefix="visit")) == []
    item = store.list_messages(MessageFilter(ids=()), now=NOW).items[2]
    assert (item.channel, item.kind, item.key, item.status, item.sent_at) == (
        "webhook",
        "json",
        "order-1",
        "sent",
        at(6),
    )


def test_pages_lose_and_repeat_nothing_when_times_are_equal(store: Store):
    made = [store.enqueue(msg(f"k{i}"), now=at(10 if i < 7 else 20)).id for i in range(11)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_messages(limit=3, cursor=cursor, now=NOW)
        seen += [m.id for m in page.items]
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    assert pages == 4
    assert seen == sorted(made[7:], reverse=True) + sorted(made[:7], reverse=True)
    # a page that ends on the last item says there is no next one
    exact = store.list_messages(limit=11, now=NOW)
    assert len(exact.items) == 11 and exact.next is None


def test_the_default_window_and_a_cursor_that_keeps_it(store: Store):
    old = store.enqueue(msg("old"), now=NOW - timedelta(days=8)).id
    recent = [
        store.enqueue(msg(f"r{i}"), now=NOW - timedelta(days=1, seconds=i)).id for i in range(3)
    ]
    page = store.list_messages(limit=2, now=NOW)
    assert page.since == NOW - timedelta(days=7)
    assert [m.id for m in page.items] == recent[:2]
    # the next page, asked for much later, still covers the first page's window
    later = store.list_messages(limit=2, cursor=page.next, now=NOW + timedelta(days=6, hours=12))
    assert [m.id for m in later.items] == [recent[2]] and later.next is None
    assert ids(store, window=9 * 86400) == [*recent, old]
    assert ids(store, MessageFilter(since=NOW - timedelta(days=30))) == [*recent, old]


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"limit": 0}, OperatorRefused, "limit must be 1 to 500"),
        ({"limit": 501}, OperatorRefused, "limit must be 1 to 500"),
        ({"cursor": "nonsense"}, InvalidCursor, "not a listing cursor"),
        ({"selector": MessageFilter(ids=(1,))}, OperatorRefused, "takes a filter, not ids"),
        (
            {"selector": MessageFilter(key_prefix="a")},
            OperatorRefused,
            "a key prefix needs its channel",
        ),
        (
            {"selector": MessageFilter(channel="hie", key_prefix="a\x00")},
            OperatorRefused,
            "key prefix 'a\\x00' cannot be one",
        ),
        (
            {"selector": MessageFilter(channel="nosuch"), "known_channels": {"hie", "webhook"}},
            OperatorRefused,
            "unknown channel 'nosuch' (channels: hie, webhook)",
        ),
    ],
)
def test_a_listing_refuses_what_it_cannot_answer(store: Store, kwargs, error, text):
    with pytest.raises(error, match=re.escape(text)):
        store.list_messages(**kwargs)


def test_a_timeline_holds_every_event_its_errors_and_the_operator_actions(store: Store):
    m = store.enqueue(msg("a"), actor="cli", now=at(0)).id
    store.claim(["hie"], "w1", 1, 60, now=at(1))
    store.record("w1", [RetryAt(m, at(30), "connection refused", response="no")], now=at(2))
    store.claim(["hie"], "w1", 1, 60, now=at(30))
    store.record("w1", [Failed(m, "AR: unknown patient", response="MSA|AR")], now=at(31))
    store.retry(MessageFilter(ids=(m,)), actor="ops", now=at(40))
    store.claim(["hie"], "w2", 1, 60, now=at(41))
    store.record("w2", [Delivered(m, "MSA|AA")], now=at(42))
    t = store.message_timeline(m)
    assert t is not None
    assert (t.id, t.key, t.status, t.payload, t.response, t.sent_at) == (
        m,
        "a",
        "sent",
        b"payload a",
        "MSA|AA",
        at(42),
    )
    steps = [(e.from_status, e.to_status, e.actor) for e in t.events]
    assert steps == [
        (None, "pending", "cli"),
        ("pending", "sending", "w1"),
        ("sending", "pending", "w1"),
        ("pending", "sending", "w1"),
        ("sending", "failed", "w1"),
        ("failed", "pending", "ops"),
        ("pending", "sending", "w2"),
        ("sending", "sent", "w2"),
    ]
    assert t.events[2].details == {"error": "connection refused"}
    assert t.events[4].details == {"error": "AR: unknown patient"}
    assert [e.at for e in t.events] == sorted(e.at for e in t.events)
    [action] = t.actions
    assert (action.actor, action.action, action.changed, action.details) == (
        "ops",
        "retry",
        1,
        {"ids": [m]},
    )
    assert t.events[5].details == {"action": "retry", "audit": action.id}
    assert store.message_timeline(424242) is None


async def test_the_async_store_lists_and_shows(db_url: str):
    store: AsyncStore = open_async_store(DatabaseSettings(url=db_url), in_process=False)
    try:
        await store.enqueue(msg("a"))
        page = await store.list_messages(MessageFilter(channel="hie"))
        assert [m.key for m in page.items] == ["a"]
        shown = await store.message_timeline(page.items[0].id)
        assert shown is not None and shown.key == "a"
        dry = await store.resend(MessageFilter(ids=(page.items[0].id,)), dry_run=True)
        assert dry.matched == 0 and dry.skipped == {"pending": 1}
    finally:
        await store.aclose()
