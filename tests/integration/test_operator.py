"""Operator actions (retry, cancel, resend) by id and by a filter, dry runs,
leased messages, the audit, and bulk operations in batches, on SQLite and on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import peewee as pw
import pytest

from daemon.domain.messages import Delivered, Failed, NewMessage
from daemon.domain.selection import MessageFilter, OperatorRefused
from daemon.store.models import AuditEntry, Message, Operation, StatusCheck, StatusEvent
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def msg(key: str, channel: str = "hie", kind: str = "hl7") -> NewMessage:
    return NewMessage(channel=channel, key=key, payload=f"payload {key}".encode(), kind=kind)


def sent(store: Store, key: str, channel: str = "hie") -> int:
    m = store.enqueue(msg(key, channel), now=T0).id
    store.claim([channel], "w", 1, 60, now=T0)
    store.record("w", [Delivered(m, "AA")], now=at(1))
    return m


def failed(store: Store, key: str, channel: str = "hie", kind: str = "hl7") -> int:
    m = store.enqueue(msg(key, channel, kind), now=T0).id
    store.claim([channel], "w", 1, 60, now=T0)
    store.record("w", [Failed(m, "boom")], now=at(1))
    return m


def snapshot() -> tuple[list[tuple], int, int]:
    rows = list(
        Message.select(Message.id, Message.status, Message.attempts, Message.updated_at)
        .order_by(Message.id)
        .tuples()
    )
    return rows, StatusEvent.select().count(), AuditEntry.select().count()


def test_resend_sends_a_sent_message_again_as_it_was(store: Store):
    m = sent(store, "a")
    StatusCheck.insert(message=m, checks=2, checked_at=at(2), answer="x", flagged=False).execute()
    result = store.resend(MessageFilter(ids=(m,)), actor="ops", now=at(10))
    assert result.changed == [m] and result.matched == 1
    row = Message.get_by_id(m)
    assert (row.status, row.attempts, row.next_attempt_at, row.sent_at) == (
        "pending",
        0,
        at(10),
        None,
    )
    assert (row.key, bytes(row.payload)) == ("a", b"payload a")
    event = (
        StatusEvent.select().where(StatusEvent.message == m).order_by(StatusEvent.id.desc()).get()
    )
    audit = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    assert (event.from_status, event.to_status, event.actor) == ("sent", "pending", "ops")
    assert event.details == {"action": "resend", "audit": audit.id}
    assert (audit.action, audit.actor, audit.changed, audit.details) == (
        "resend",
        "ops",
        1,
        {"ids": [m]},
    )
    assert StatusCheck.select().count() == 0  # its remote status is checked afresh
    assert [c.id for c in store.claim(["hie"], "w", 5, 60, now=at(11))] == [m]


def test_resend_by_a_filter_names_its_statuses(store: Store):
    a, b = sent(store, "a"), sent(store, "b")
    other = sent(store, "c", channel="webhook")
    Message.update(status="rejected").where(Message.id == b).execute()
    with pytest.raises(OperatorRefused, match="resend by a filter needs the statuses"):
        store.resend(MessageFilter(channel="hie"))
    result = store.resend(MessageFilter(channel="hie", statuses=("rejected",)))
    assert result.changed == [b] and result.skipped == {"sent": 1}
    assert Message.get_by_id(a).status == "sent" and Message.get_by_id(other).status == "sent"


@pytest.mark.parametrize(
    ("action", "status", "text"),
    [
        ("retry", "sent", "retry does not take sent messages .*: send it again with resend"),
        ("retry", "confirmed", "send it again with resend"),
        ("retry", "sending", "a message being sent is never touched"),
        ("cancel", "sent", "cancel does not take sent messages"),
        ("resend", "failed", "it was not sent; use retry"),
    ],
)
def test_the_rules_refuse_a_status_an_action_does_not_take(store: Store, action, status, text):
    m = sent(store, "a")
    before = snapshot()
    with pytest.raises(OperatorRefused, match=text):
        getattr(store, action)(MessageFilter(channel="hie", statuses=(status,)))
    assert snapshot() == before
    assert Message.get_by_id(m).status == "sent"


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (MessageFilter(), "select messages by id or by a filter"),
        (MessageFilter(ids=(1,), channel="hie"), "by id or by a filter .*, not both"),
        (MessageFilter(channel="nosuch"), r"unknown channel 'nosuch' \(channels: hie, webhook\)"),
        (MessageFilter(key_prefix="a"), "a key prefix needs its channel"),
        (MessageFilter(statuses=("lost",)), "unknown status 'lost'"),
    ],
)
def test_selections_that_cannot_be_meant_are_refused(store: Store, selector, text):
    failed(store, "a")
    before = snapshot()
    for action in (store.retry, store.cancel, store.resend):
        with pytest.raises(OperatorRefused, match=text):
            action(selector, known_channels={"hie", "webhook"})
    assert snapshot() == before


def test_retry_and_cancel_by_kind_and_key_prefix(store: Store):
    a = failed(store, "visit-1")
    b = failed(store, "visit-2", kind="json")
    c = failed(store, "order-1")
    result = store.retry(MessageFilter(channel="hie", key_prefix="visit-"), now=at(5))
    assert result.changed == [a, b]
    result = store.cancel(MessageFilter(channel="hie", kind="json"), now=at(6))
    assert result.changed == [b] and result.skipped == {}
    assert [Message.get_by_id(i).status for i in (a, b, c)] == ["pending", "cancelled", "failed"]
    audit = AuditEntry.select().order_by(AuditEntry.id).first()
    assert audit.details == {"channel": "hie", "key_prefix": "visit-", "statuses": ["failed"]}
    assert audit.target == "messages where channel hie, statuses failed, key_prefix visit-"


def test_a_dry_run_changes_nothing_and_says_what_would(store: Store):
    made = [failed(store, f"f{i}") for i in range(25)]
    pending = store.enqueue(msg("p"), now=T0).id
    before = snapshot()
    result = store.retry(MessageFilter(channel="hie"), dry_run=True, now=at(9))
    assert result.dry_run and result.changed == []
    assert result.matched == 25 and result.sample == made[:20]
    assert result.skipped == {"pending": 1}
    by_id = store.cancel(MessageFilter(ids=(pending, made[0], 999_999)), dry_run=True)
    assert (by_id.matched, by_id.sample, by_id.missing) == (
        2,
        sorted([pending, made[0]]),
        [999_999],
    )
    resend = store.resend(MessageFilter(ids=(pending,)), dry_run=True)
    assert resend.matched == 0 and resend.skipped == {"pending": 1}
    assert snapshot() == before


def test_a_leased_message_is_never_touched_and_is_reported(store: Store):
    sent_one = sent(store, "s")
    for key in ("a", "b"):
        store.enqueue(msg(key), now=T0)
    leased, _ = (m.id for m in store.claim(["hie"], "w", 2, 600, now=at(2)))
    for action, selector in (
        (store.retry, MessageFilter(ids=(leased,))),
        (store.cancel, MessageFilter(channel="hie", statuses=("pending", "failed"))),
        (store.resend, MessageFilter(channel="hie", statuses=("sent",))),
    ):
        result = action(selector, now=at(5))
        assert result.skipped.get("sending") == (1 if selector.ids else 2)
    row = Message.get_by_id(leased)
    assert (row.status, row.lease_owner) == ("sending", "w")
    assert Message.get_by_id(sent_one).status == "pending"  # resent


def test_the_audit_entry_is_in_the_transaction_of_the_change(store: Store):
    """A change that fails leaves neither the change nor its audit entry."""
    m = failed(store, "a")
    refuse = "BEGIN SELECT RAISE(ABORT, 'no cancelling'); END"
    if store.postgres:
        store.db.execute_sql(
            "CREATE FUNCTION no_cancel() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no cancelling'; END $$"
        )
        store.db.execute_sql(
            "CREATE TRIGGER no_cancel BEFORE UPDATE ON outboxd_message FOR EACH ROW "
            "WHEN (NEW.status = 'cancelled') EXECUTE FUNCTION no_cancel()"
        )
    else:
        store.db.execute_sql(
            "CREATE TRIGGER no_cancel BEFORE UPDATE ON outboxd_message "
            f"WHEN NEW.status = 'cancelled' {refuse}"
        )
    try:
        before = snapshot()
        with pytest.raises(pw.DatabaseError, match="no cancelling"):
            store.cancel(MessageFilter(ids=(m,)), now=at(5))
        assert snapshot() == before
    finally:
        store.db.execute_sql(
            "DROP TRIGGER no_cancel ON outboxd_message"
            if store.postgres
            else "DROP TRIGGER no_cancel"
        )
        if store.postgres:
            store.db.execute_sql("DROP FUNCTION no_cancel()")
    store.cancel(MessageFilter(ids=(m,)), now=at(6))
    assert AuditEntry.select().count() == 1


def drive(store: Store, operation: int, batch: int) -> Iterator[tuple[str, int]]:
    while True:
        view = store.advance_operation(operation, batch=batch, now=at(100))
        assert view is not None
        yield view.state, view.done
        if view.finished:
            return


def test_a_filter_over_the_bound_runs_in_batches(store: Store):
    made = [failed(store, f"f{i:02}") for i in range(12)]
    store.enqueue(msg("p"), now=T0)
    result = store.retry(MessageFilter(channel="hie"), actor="ops", bound=5, now=at(50))
    assert result.operation is not None and result.changed == []
    assert result.matched == 12 and result.skipped == {"pending": 1}
    assert Message.select().where(Message.status == "failed").count() == 12  # nothing yet
    late = store.enqueue(msg("late"), now=at(60)).id  # after the operation started:
    Message.update(status="failed").where(Message.id == late).execute()  # not its business
    op = store.operation(result.operation)
    assert op is not None and (op.state, op.matched, op.done, op.action) == (
        "running",
        12,
        0,
        "retry",
    )
    assert list(drive(store, result.operation, 5)) == [
        ("running", 5),
        ("running", 10),
        ("finished", 12),
    ]
    assert all(Message.get_by_id(i).status == "pending" for i in made)
    assert Message.get_by_id(late).status == "failed"
    row = Operation.get_by_id(result.operation)
    assert (row.state, row.done, row.actor, row.finished_at) == ("finished", 12, "ops", at(100))
    assert row.result == {"changed": 12, "skipped": {"pending": 1}}
    assert row.filter == {"channel": "hie", "statuses": ["failed"]}
    audits = list(AuditEntry.select().order_by(AuditEntry.id))
    assert [a.changed for a in audits] == [5, 5, 2]
    assert all(a.details["operation"] == result.operation for a in audits)
    # a finished operation stays as it is; an unknown one is None
    again = store.advance_operation(result.operation)
    assert again is not None and again.done == 12
    assert store.advance_operation(424242) is None
    assert [o.id for o in store.operations(running=True)] == []
    assert [o.id for o in store.operations()] == [result.operation]


def test_a_bulk_batch_skips_what_changed_since_it_started(store: Store):
    made = [failed(store, f"f{i}") for i in range(4)]
    result = store.cancel(MessageFilter(channel="hie", statuses=("failed",)), bound=2)
    assert result.operation is not None
    store.retry(MessageFilter(ids=(made[1],)))  # pending now: no longer failed
    assert list(drive(store, result.operation, 10)) == [("finished", 3)]
    statuses = [Message.get_by_id(i).status for i in made]
    assert statuses == ["cancelled", "pending", "cancelled", "cancelled"]
