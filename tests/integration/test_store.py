"""The store contract, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.messages import (
    Delivered,
    Failed,
    InvalidMessage,
    NewMessage,
    Released,
    RetryAt,
    UnknownPrerequisite,
)
from daemon.domain.selection import MessageFilter
from daemon.store.models import Message, StatusEvent
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def msg(key: str, channel: str = "hie", **kw) -> NewMessage:
    return NewMessage(channel=channel, key=key, payload=f"payload {key}".encode(), **kw)


def status_of(message_id: int) -> str:
    return Message.get_by_id(message_id).status


def history(message_id: int) -> list[tuple[str | None, str, str]]:
    events = StatusEvent.select().where(StatusEvent.message == message_id).order_by(StatusEvent.id)
    return [(e.from_status, e.to_status, e.actor) for e in events]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- enqueue ---------------------------------------------------------------------------


def test_enqueue_stores_message_and_creation_event(store: Store):
    result = store.enqueue(msg("a"), actor="test", now=T0)
    assert result.created and result.status == "pending"
    row = Message.get_by_id(result.id)
    assert (row.channel, row.key, bytes(row.payload), row.attempts) == ("hie", "a", b"payload a", 0)
    assert row.created_at == T0 and row.next_attempt_at == T0
    assert history(result.id) == [(None, "pending", "test")]


def test_duplicate_key_returns_existing_row(store: Store):
    first = store.enqueue(msg("a"), now=T0)
    again = store.enqueue(NewMessage("hie", "a", b"other payload"), now=at(5))
    assert again.id == first.id and not again.created
    assert Message.select().count() == 1
    assert bytes(Message.get_by_id(first.id).payload) == b"payload a"
    assert len(history(first.id)) == 1
    # the same key on another channel is another message
    other = store.enqueue(msg("a", channel="webhook"))
    assert other.created and other.id != first.id


def test_duplicate_reports_current_status(store: Store):
    first = store.enqueue(msg("a"), now=T0)
    claimed = store.claim(["hie"], "w1", 10, 60, now=T0)
    store.record("w1", [Delivered(claimed[0].id, "AA")], now=T0)
    assert store.enqueue(msg("a")).status == "sent"
    assert store.enqueue(msg("a")).id == first.id


def test_enqueue_many_keeps_order_and_dedupes_within_batch(store: Store):
    results = store.enqueue_many([msg("a"), msg("b"), msg("a"), msg("c")], now=T0)
    assert [r.created for r in results] == [True, True, False, True]
    assert results[0].id == results[2].id
    assert Message.select().count() == 3


def test_enqueue_many_ids_follow_the_batch_and_columns_stay_apart(store: Store):
    # more than one statement's chunk (500), keys in descending order, the
    # optional columns set on some rows only
    keys = [f"k{i:04d}" for i in range(620, 0, -1)]
    batch = [
        msg(k, group_key=f"g{i % 3}" if i % 2 else None, not_before=at(i) if i % 7 == 0 else None)
        for i, k in enumerate(keys)
    ]
    results = store.enqueue_many(batch, now=T0)
    ids = [r.id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == len(keys)
    rows = {m.id: m for m in Message.select()}
    for i, (m, r) in enumerate(zip(batch, results, strict=True)):
        row = rows[r.id]
        assert (row.key, bytes(row.payload), row.group_key) == (m.key, m.payload, m.group_key)
        assert row.next_attempt_at == (at(i) if i % 7 == 0 and i else T0)
        assert (row.status, row.attempts, row.created_at) == ("pending", 0, T0)
    assert StatusEvent.select().count() == len(keys)


def test_payload_bytes_round_trip(store: Store):
    raw = bytes(range(256)) + "é\r\n".encode("latin-1")
    result = store.enqueue(NewMessage("hie", "bin", raw))
    claimed = store.claim(["hie"], "w", 1, 60)
    assert claimed[0].id == result.id and claimed[0].payload == raw


def test_a_batch_claim_keeps_every_payload_apart(store: Store):
    # many at once, sizes 1 to 5000 bytes, NULs, bytes that are not UTF-8, one a
    # megabyte: each claimed message gets exactly its own payload back
    payloads = [bytes([i % 256]) * (1 + (i * 389) % 5000) + b"\x00\xff" for i in range(120)]
    payloads[7] = b"\x00"
    payloads[50] = bytes(range(256)) * 4096
    results = store.enqueue_many(
        [NewMessage("hie", f"b{i}", raw) for i, raw in enumerate(payloads)]
    )
    claimed = store.claim(["hie"], "w", 200, 60)
    assert [m.id for m in claimed] == [r.id for r in results]
    assert [m.payload for m in claimed] == payloads
    assert [m.key for m in claimed] == [f"b{i}" for i in range(120)]
    assert {m.attempts for m in claimed} == {0}
    events = StatusEvent.select().where(StatusEvent.to_status == "sending")
    assert sorted(e.message_id for e in events) == [r.id for r in results]
    assert {e.details["attempt"] for e in events} == {1}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # SQLite joins the payloads
def test_a_claim_too_big_to_join_reads_the_payloads_one_by_one(store: Store):
    payloads = [bytes([65 + i]) * 3000 + b"\x00" for i in range(6)]
    results = store.enqueue_many([NewMessage("hie", f"j{i}", p) for i, p in enumerate(payloads)])
    # a length limit below the six payloads together (18 KB), above each one
    store.db.connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
    claimed = store.claim(["hie"], "w", 10, 60)
    assert [m.id for m in claimed] == [r.id for r in results]
    assert [m.payload for m in claimed] == payloads
    assert Message.select().where(Message.status == "sending").count() == 6


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (NewMessage("", "k", b"x"), "channel must be a non-empty string"),
        (NewMessage("hie", "", b"x"), "key must be a non-empty string"),
        (NewMessage("hie", "k" * 256, b"x"), "key is longer than 255"),
        (NewMessage("c" * 65, "k", b"x"), "channel is longer than 64"),
        (NewMessage("hie", "k", "text"), "payload must be bytes"),  # type: ignore[arg-type]
        (NewMessage("hie", "k", b"x", after_key="k"), "cannot be its own prerequisite"),
        (NewMessage("hie", "k", b"x", after_key=""), "after_key must be a non-empty string"),
        (NewMessage("hie", "a\nb", b"x"), r"key holds a character that cannot be shown \('\\n'\)"),
        (NewMessage("hie", "a\rb", b"x"), "key holds a character that cannot be shown"),
        (NewMessage("hie", "\x1b[31mred", b"x"), "key holds a character that cannot be shown"),
        (NewMessage("hie", "a\udcffb", b"x"), "key holds a character that cannot be shown"),
        (NewMessage("hie", " ", b"x"), "key begins or ends with a space"),
        (NewMessage("hie", "k ", b"x"), "key begins or ends with a space"),
        (NewMessage("hie", "k", b"x", group_key="g\t"), "group_key holds a character"),
        (NewMessage("hie", "k", b"x", kind="hl7\x00"), "kind holds a character"),
    ],
)
def test_invalid_messages_are_refused(store: Store, message, reason):
    with pytest.raises(InvalidMessage, match=reason):
        store.enqueue(message)
    assert Message.select().count() == 0


def test_keys_may_hold_any_printable_text(store: Store):
    for key in ("2026/11/23/000007:task:3", "Ünïcødé key · 患者", "a b c", "k" * 255):
        assert store.enqueue(msg(key)).created


def test_unknown_prerequisite_refuses_the_whole_batch(store: Store):
    with pytest.raises(UnknownPrerequisite, match="'nope'"):
        store.enqueue_many([msg("a"), msg("b", after_key="nope")])
    assert Message.select().count() == 0
    assert StatusEvent.select().count() == 0
    with pytest.raises(UnknownPrerequisite, match="id 999"):
        store.enqueue(msg("c", after_id=999))


def test_prerequisite_within_batch_and_before(store: Store):
    first = store.enqueue(msg("add"))
    r = store.enqueue_many([msg("task3", after_key="add"), msg("task4", after_key="task3")])
    assert Message.get_by_id(r[0].id).after_id == first.id
    assert Message.get_by_id(r[1].id).after_id == r[0].id
    # a prerequisite later in the same batch is also found
    r2 = store.enqueue_many([msg("x2", after_key="x1"), msg("x1")])
    assert Message.get_by_id(r2[0].id).after_id == r2[1].id


# --- claim -----------------------------------------------------------------------------


def test_claim_oldest_due_first_with_limit(store: Store):
    ids = [store.enqueue(msg(f"m{i}"), now=at(i)).id for i in range(5)]
    first = store.claim(["hie"], "w1", 2, 60, now=at(10))
    assert [m.id for m in first] == ids[:2]
    second = store.claim(["hie"], "w2", 10, 60, now=at(10))
    assert [m.id for m in second] == ids[2:]
    assert store.claim(["hie"], "w3", 10, 60, now=at(10)) == []
    assert history(ids[0]) == [(None, "pending", "enqueue"), ("pending", "sending", "w1")]
    row = Message.get_by_id(ids[0])
    assert row.lease_owner == "w1" and row.lease_expires_at == at(70)


def test_claim_only_due_messages_of_the_given_channels(store: Store):
    later = store.enqueue(msg("later", not_before=at(100)), now=T0)
    store.enqueue(msg("other", channel="webhook"), now=T0)
    now_due = store.enqueue(msg("now"), now=T0)
    assert [m.id for m in store.claim(["hie"], "w", 10, 60, now=at(1))] == [now_due.id]
    assert [m.id for m in store.claim(["hie"], "w", 10, 60, now=at(100))] == [later.id]


def test_claim_fills_channels_in_order(store: Store):
    for i in range(3):
        store.enqueue(msg(f"h{i}"), now=T0)
        store.enqueue(msg(f"w{i}", channel="webhook"), now=T0)
    claimed = store.claim(["webhook", "hie"], "w", 4, 60, now=T0)
    assert [m.channel for m in claimed] == ["webhook"] * 3 + ["hie"]


def test_claim_waits_for_prerequisite_to_be_sent(store: Store):
    add = store.enqueue(msg("add"), now=T0)
    task = store.enqueue(msg("task", after_key="add"), now=T0)
    claimed = store.claim(["hie"], "w", 10, 60, now=T0)
    assert [m.id for m in claimed] == [add.id]
    store.record("w", [RetryAt(add.id, T0, "down")], now=T0)
    # the prerequisite is pending again, not sent: its dependent still waits
    assert [m.id for m in store.claim(["hie"], "w", 10, 60, now=at(1))] == [add.id]
    store.record("w", [Delivered(add.id, "ok")], now=at(1))
    claimed = store.claim(["hie"], "w", 10, 60, now=at(2))
    assert [(m.id, m.after_id) for m in claimed] == [(task.id, add.id)]


def test_failed_prerequisite_blocks_until_retried(store: Store):
    add = store.enqueue(msg("add"), now=T0)
    task = store.enqueue(msg("task", after_key="add"), now=T0)
    store.claim(["hie"], "w", 1, 60, now=T0)
    store.record("w", [Failed(add.id, "rejected")], now=T0)
    assert store.claim(["hie"], "w", 10, 60, now=at(1)) == []
    store.retry(MessageFilter(ids=(add.id,)), now=at(2))
    assert [m.id for m in store.claim(["hie"], "w", 10, 60, now=at(3))] == [add.id]
    store.record("w", [Delivered(add.id)], now=at(3))
    assert [m.id for m in store.claim(["hie"], "w", 10, 60, now=at(4))] == [task.id]


# --- outcomes --------------------------------------------------------------------------


def test_record_delivered(store: Store):
    m = store.enqueue(msg("a"), now=T0)
    store.claim(["hie"], "w", 1, 60, now=T0)
    result = store.record("w", [Delivered(m.id, "MSA|AA|1")], now=at(1))
    assert result.recorded == {m.id: "sent"} and result.lost == []
    row = Message.get_by_id(m.id)
    assert (row.status, row.response, row.sent_at, row.attempts) == ("sent", "MSA|AA|1", at(1), 1)
    assert row.lease_owner is None and row.lease_expires_at is None
    assert history(m.id)[-1] == ("sending", "sent", "w")


def test_record_writes_the_retry_it_is_told(store: Store):
    """The dispatcher decides when to retry and whether to give up; the store writes
    it: the status, the attempt counted (or not), the time, the event's details."""
    m = store.enqueue(msg("a"), now=T0)
    store.claim(["hie"], "w", 1, 60, now=T0)
    details = {"error": "timeout", "attempt": 1, "decision": "backoff 5s after attempt 1"}
    store.record("w", [RetryAt(m.id, at(5), "timeout", details=details)], now=T0)
    row = Message.get_by_id(m.id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "timeout")
    assert row.next_attempt_at == at(5)
    assert store.claim(["hie"], "w", 1, 60, now=at(4)) == []
    store.claim(["hie"], "w", 1, 60, now=at(5))
    # a wait for a predecessor is not an attempt
    store.record("w", [RetryAt(m.id, at(65), "waiting", counted=False)], now=at(5))
    assert Message.get_by_id(m.id).attempts == 1
    store.claim(["hie"], "w", 1, 60, now=at(65))
    gave_up = {"error": "timeout", "attempt": 2, "decision": "gave up after 2 attempt(s)"}
    failed = Failed(m.id, "timeout (gave up after 2 attempt(s))", gave_up=True, details=gave_up)
    store.record("w", [failed], now=at(65))
    row = Message.get_by_id(m.id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.last_error == "timeout (gave up after 2 attempt(s))"
    events = StatusEvent.select().where(StatusEvent.message == m.id).order_by(StatusEvent.id)
    done = [e.details for e in events if e.from_status == "sending"]
    assert done == [details, {"error": "waiting"}, gave_up]


def test_record_retry_honours_requested_delay(store: Store):
    m = store.enqueue(msg("a"), now=T0)
    store.claim(["hie"], "w", 1, 60, now=T0)
    store.record("w", [RetryAt(m.id, at(120), "429", response="busy")], now=T0)
    row = Message.get_by_id(m.id)
    assert row.next_attempt_at == at(120) and row.response == "busy"


def test_record_failed_and_released(store: Store):
    a = store.enqueue(msg("a"), now=T0)
    b = store.enqueue(msg("b"), now=T0)
    store.claim(["hie"], "w", 2, 60, now=T0)
    result = store.record("w", [Failed(a.id, "AR: unknown patient", "MSA|AR"), Released(b.id)])
    assert result.recorded == {a.id: "failed", b.id: "pending"}
    row_a, row_b = Message.get_by_id(a.id), Message.get_by_id(b.id)
    assert (row_a.status, row_a.last_error, row_a.response) == (
        "failed",
        "AR: unknown patient",
        "MSA|AR",
    )
    assert (row_b.status, row_b.attempts, row_b.lease_owner) == ("pending", 0, None)
    assert history(b.id)[-1] == ("sending", "pending", "w")


def test_outcome_of_a_lost_lease_is_not_recorded(store: Store):
    m = store.enqueue(msg("a"), now=T0)
    store.claim(["hie"], "slow", 1, 10, now=T0)
    assert store.expire_leases(now=at(11)) == [m.id]
    store.claim(["hie"], "fast", 1, 10, now=at(12))
    result = store.record("slow", [Delivered(m.id, "late")], now=at(13))
    assert result.recorded == {} and result.lost == [m.id]
    row = Message.get_by_id(m.id)
    assert (row.status, row.lease_owner) == ("sending", "fast")
    assert store.record("slow", [RetryAt(m.id, at(20), "x")]).lost == [m.id]
    assert store.record("fast", [Delivered(m.id, "ok")]).recorded == {m.id: "sent"}


def test_outcome_for_a_message_never_claimed_is_lost(store: Store):
    m = store.enqueue(msg("a"))
    assert store.record("w", [Delivered(m.id)]).lost == [m.id]
    assert status_of(m.id) == "pending"


# --- leases ----------------------------------------------------------------------------


def test_renew_only_own_leases(store: Store):
    a = store.enqueue(msg("a"), now=T0)
    b = store.enqueue(msg("b"), now=T0)
    store.claim(["hie"], "w1", 1, 30, now=T0)
    store.claim(["hie"], "w2", 1, 30, now=T0)
    assert store.renew_leases("w1", [a.id, b.id], 60, now=at(20)) == [a.id]
    assert Message.get_by_id(a.id).lease_expires_at == at(80)
    assert Message.get_by_id(b.id).lease_expires_at == at(30)


def test_expired_leases_return_to_pending(store: Store):
    a = store.enqueue(msg("a"), now=T0)
    b = store.enqueue(msg("b"), now=T0)
    store.claim(["hie"], "dead", 1, 30, now=T0)
    store.claim(["hie"], "alive", 1, 60, now=T0)
    assert store.expire_leases(now=at(30)) == []  # not yet past expiry
    assert store.expire_leases(now=at(31)) == [a.id]
    row = Message.get_by_id(a.id)
    assert (row.status, row.attempts, row.lease_owner) == ("pending", 0, None)
    assert history(a.id)[-1] == ("sending", "pending", "lease-expiry")
    event = (
        StatusEvent.select()
        .where(StatusEvent.message == a.id)
        .order_by(StatusEvent.id.desc())
        .get()
    )
    assert event.details["owner"] == "dead"
    assert status_of(b.id) == "sending"
    assert [m.id for m in store.claim(["hie"], "alive", 10, 60, now=at(32))] == [a.id]


# --- operator actions ------------------------------------------------------------------


def _fail(store: Store, key: str, now: datetime) -> int:
    m = store.enqueue(msg(key), now=now)
    store.claim(["hie"], "w", 1, 60, now=now)
    store.record("w", [Failed(m.id, "boom")], now=now)
    return m.id


def test_retry_by_filter_resets_attempts(store: Store):
    old = _fail(store, "old", T0)
    new = _fail(store, "new", at(3600))
    sent = store.enqueue(msg("sent"), now=at(3600)).id
    store.claim(["hie"], "w", 1, 60, now=at(3600))
    store.record("w", [Delivered(sent)], now=at(3600))
    result = store.retry(MessageFilter(channel="hie", since=at(1800)), actor="ops", now=at(7200))
    assert result.changed == [new]
    assert result.skipped == {"sent": 1}
    row = Message.get_by_id(new)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, at(7200))
    assert history(new)[-1] == ("failed", "pending", "ops")
    assert status_of(old) == "failed"


def test_retry_by_id_and_missing_ids(store: Store):
    failed = _fail(store, "f", T0)
    cancelled = store.enqueue(msg("c")).id
    store.cancel(MessageFilter(ids=(cancelled,)))
    result = store.retry(MessageFilter(ids=(failed, cancelled, 424242)))
    assert result.changed == [failed, cancelled]
    assert result.missing == [424242]


def test_sending_messages_are_never_retried_or_cancelled(store: Store):
    m = store.enqueue(msg("a"))
    store.claim(["hie"], "w", 1, 60)
    assert store.retry(MessageFilter(ids=(m.id,))).skipped == {"sending": 1}
    assert store.cancel(MessageFilter(ids=(m.id,))).skipped == {"sending": 1}
    assert status_of(m.id) == "sending"


def test_cancel_by_filter_takes_pending_only_by_default(store: Store):
    failed = _fail(store, "f", T0)
    pending = store.enqueue(msg("p"), now=T0).id
    result = store.cancel(MessageFilter(channel="hie"))
    assert result.changed == [pending] and result.skipped == {"failed": 1}
    result = store.cancel(MessageFilter(channel="hie", statuses=("failed",)))
    assert result.changed == [failed]
    assert history(failed)[-1][1:] == ("cancelled", "operator")
    assert store.claim(["hie"], "w", 10, 60) == []


def test_operator_needs_a_selector(store: Store):
    with pytest.raises(ValueError, match="select messages"):
        store.retry(MessageFilter())


# --- stats -----------------------------------------------------------------------------


def test_stats(store: Store):
    for i in range(3):
        store.enqueue(msg(f"p{i}"), now=at(i))
    store.enqueue(msg("later", not_before=at(10_000)), now=at(5))
    sent = store.enqueue(msg("s", channel="webhook"), now=T0).id
    failed = store.enqueue(msg("f", channel="webhook"), now=T0).id
    store.claim(["webhook"], "w", 10, 60, now=at(10))
    store.record("w", [Delivered(sent), Failed(failed, "no")], now=at(10))
    stats = {s.channel: s for s in store.stats(now=at(100), window=3600)}
    hie, hook = stats["hie"], stats["webhook"]
    assert hie.counts == {"pending": 4}
    assert hie.due == 3
    assert hie.oldest_pending_age == 100.0
    assert hie.success_rate is None
    assert hook.counts == {"failed": 1, "sent": 1}
    assert (hook.sent_in_window, hook.failed_in_window, hook.success_rate) == (1, 1, 0.5)
    assert hook.oldest_pending_age is None
    later = {s.channel: s for s in store.stats(now=at(10 + 3601), window=3600)}
    assert later["webhook"].success_rate is None


# --- ordered channels ------------------------------------------------------------------


def test_ordered_claims_one_message_per_group_oldest_first(store: Store):
    a1 = store.enqueue(msg("a1", group_key="patient-a"), now=T0).id
    a2 = store.enqueue(msg("a2", group_key="patient-a"), now=T0).id
    b1 = store.enqueue(msg("b1", group_key="patient-b"), now=T0).id
    free = store.enqueue(msg("free"), now=T0).id
    claimed = store.claim(["hie"], "w", 10, 60, now=T0, ordered=("hie",))
    assert [m.id for m in claimed] == [a1, b1, free]
    assert claimed[0].group_key == "patient-a"
    # a2 waits while a1 is being sent, and while a1 waits for a retry
    assert store.claim(["hie"], "w", 10, 60, now=T0, ordered=("hie",)) == []
    store.record("w", [RetryAt(a1, at(30), "down")], now=T0)
    assert store.claim(["hie"], "w", 10, 60, now=at(1), ordered=("hie",)) == []
    claimed = store.claim(["hie"], "w", 10, 60, now=at(30), ordered=("hie",))
    assert [m.id for m in claimed] == [a1]
    store.record("w", [Delivered(a1)], now=at(30))
    assert [m.id for m in store.claim(["hie"], "w", 10, 60, now=at(31), ordered=("hie",))] == [a2]


def test_unordered_channel_ignores_groups(store: Store):
    store.enqueue(msg("a1", group_key="g"), now=T0)
    store.enqueue(msg("a2", group_key="g"), now=T0)
    assert len(store.claim(["hie"], "w", 10, 60, now=T0)) == 2


# --- the shared rate limit ---------------------------------------------------------------


def test_take_tokens_shares_one_bucket(store: Store):
    from daemon.resilience.ratelimit import Bucket

    bucket = Bucket(rate=10, capacity=3)
    assert store.take_tokens("hie", 2, bucket, now=T0) == (2, 0.0)
    assert store.take_tokens("hie", 5, bucket, now=T0) == (1, 0.0)
    granted, wait = store.take_tokens("hie", 1, bucket, now=T0)
    assert granted == 0 and wait == pytest.approx(0.1)
    assert store.take_tokens("hie", 5, bucket, now=at(0.25))[0] == 2
    # another channel has a bucket of its own
    assert store.take_tokens("webhook", 3, bucket, now=T0) == (3, 0.0)
    # a long pause refills only up to the burst
    assert store.take_tokens("hie", 10, bucket, now=at(3600))[0] == 3


def test_enqueue_notifies_postgres_listeners(pg_url):
    import psycopg

    from daemon.config.database import DatabaseSettings
    from daemon.store.db import open_database

    # NOTIFY reaches every session of the database, other test runs' too: a channel
    # of this run's own, and only its notifications counted
    channel = f"notify-{os.getpid()}-{time.monotonic_ns()}"
    store = Store(open_database(DatabaseSettings(url=pg_url)))
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as listener:
        listener.execute("LISTEN outboxd")
        store.enqueue(msg("notify-a", channel=channel))
        store.enqueue(msg("notify-b", channel=channel, not_before=T0 + timedelta(days=3650)))
        store.enqueue(msg("notify-a", channel=channel))  # a duplicate: nothing new
        notes = [n.payload for n in listener.notifies(timeout=1.0) if n.payload == channel]
    store.close()
    assert notes == [channel]
