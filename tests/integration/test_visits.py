"""Visits, their task progress, and poll cursors: on SQLite and PostgreSQL.

The store carries progress entries without reading them: a source's entries fill
steps that are new, queued or held; an outcome's entry replaces its step's,
keeping what the source said about it (``source``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.messages import Delivered, Failed, NewMessage, RetryAt, UnknownPrerequisite
from daemon.store.models import Message, StatusEvent
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
WAKTU = 1795910400000


def task(kb: str, n: int, after: str | None) -> NewMessage:
    body = json.dumps({"kodebooking": kb, "taskid": n, "waktu": WAKTU + n}).encode()
    return NewMessage(
        "bpjs",
        f"{kb}:task:{n}",
        body,
        "bpjs.updatewaktu",
        after_key=after,
        group_key=kb,
        visit=kb,
        step=str(n),
    )


def add(kb: str, channel: str = "bpjs") -> NewMessage:
    body = json.dumps({"kodebooking": kb}).encode()
    return NewMessage(channel, f"{kb}:add", body, "bpjs.add", group_key=kb, visit=kb, step="add")


def progress_of(store: Store, kb: str, source: str = "khanza") -> dict:
    [visit] = store.find_visits(kb, source)
    return visit.task_progress


def test_sync_enqueues_records_progress_and_moves_the_cursor(store: Store):
    results = store.sync_visits(
        "khanza",
        {"KB1": {"add": {"status": "queued"}, "3": {"status": "queued", "waktu": WAKTU + 3}}},
        [add("KB1"), task("KB1", 3, "KB1:add")],
        cursor="2026-11-23",
        now=T0,
    )
    assert [r.created for r in results] == [True, True]
    [visit] = store.find_visits("KB1")
    assert visit.source == "khanza"
    assert visit.task_progress == {
        "add": {"status": "queued"},
        "3": {"status": "queued", "waktu": WAKTU + 3},
    }
    # the messages are linked to their visit
    assert {m.visit_id for m in Message.select()} == {Message.select().first().visit_id}
    assert store.get_cursor("khanza") == "2026-11-23"
    # the same poll again: nothing new, the cursor moves on
    again = store.sync_visits("khanza", {}, [add("KB1")], cursor="2026-11-23T2")
    assert [r.created for r in again] == [False]
    assert store.get_cursor("khanza") == "2026-11-23T2"


def test_two_sources_keep_their_own_visit_of_one_booking_code(store: Store):
    store.sync_visits("rs_a", {"KB1": {"add": {"status": "queued"}}}, [add("KB1", "bpjs_a")])
    store.sync_visits("rs_b", {"KB1": {"add": {"status": "held", "reason": "x"}}}, [])
    visits = store.find_visits("KB1")
    assert [(v.source, v.task_progress["add"]["status"]) for v in visits] == [
        ("rs_a", "queued"),
        ("rs_b", "held"),
    ]
    assert store.task_progress("rs_b", ["KB1"]) == {
        "KB1": {"add": {"status": "held", "reason": "x"}}
    }
    assert [v.source for v in store.find_visits("KB1", "rs_a")] == ["rs_a"]
    assert store.find_visits("KB1", "rs_c") == []


def test_task_progress_of_the_known_visits_only(store: Store):
    progress = {f"KB{i}": {"add": {"status": "queued"}} for i in range(3)}
    store.sync_visits("khanza", progress, [add(kb) for kb in progress], cursor="c", now=T0)
    found = store.task_progress("khanza", ["KB0", "KB2", "KB9", "KB0"])
    assert found == {"KB0": {"add": {"status": "queued"}}, "KB2": {"add": {"status": "queued"}}}
    assert store.task_progress("khanza", []) == {}
    assert store.task_progress("other", ["KB0"]) == {}
    many = [f"KB{i}" for i in range(1200)]  # more than one statement's worth
    assert set(store.task_progress("khanza", many)) == {"KB0", "KB1", "KB2"}


def test_a_failed_sync_moves_nothing(store: Store):
    with pytest.raises(UnknownPrerequisite):
        store.sync_visits(
            "khanza",
            {"KB1": {"3": {"status": "queued"}}},
            [task("KB1", 3, "KB1:add")],  # its add is not there
            cursor="moved",
        )
    assert store.find_visits("KB1") == []
    assert store.get_cursor("khanza") is None
    assert Message.select().count() == 0


def test_outcomes_update_progress_in_the_same_transaction(store: Store):
    store.sync_visits(
        "khanza",
        {
            "KB1": {
                "add": {"status": "queued"},
                "3": {"status": "queued"},
                "4": {"status": "queued"},
            }
        },
        [add("KB1"), task("KB1", 3, "KB1:add"), task("KB1", 4, "KB1:task:3")],
        now=T0,
    )
    [a] = store.claim(["bpjs"], "w", 10, 60, now=T0)
    store.record("w", [Delivered(a.id, "200", ("add", {"status": "sent"}))], now=T0)
    [t3] = store.claim(["bpjs"], "w", 10, 60, now=T0)
    retrying = {"status": "retrying", "reason": "503", "waktu": WAKTU + 3}
    store.record("w", [RetryAt(t3.id, T0 + timedelta(seconds=30), "503", progress=("3", retrying))])
    progress = progress_of(store, "KB1")
    assert progress["add"] == {"status": "sent"}
    assert progress["3"] == retrying
    assert progress["4"] == {"status": "queued"}
    [t3] = store.claim(["bpjs"], "w", 10, 60, now=T0 + timedelta(seconds=30))
    failed = {"status": "failed", "reason": "201 Rujukan tidak valid"}
    store.record("w", [Failed(t3.id, "201 Rujukan tidak valid", progress=("3", failed))])
    assert progress_of(store, "KB1")["3"] == failed
    # a later poll cannot overwrite an outcome with "queued" or "held"
    store.sync_visits("khanza", {"KB1": {"3": {"status": "held", "reason": "x"}}}, [])
    assert progress_of(store, "KB1")["3"]["status"] == "failed"


def test_an_outcome_keeps_what_the_source_said_about_the_step(store: Store):
    observed = {"time": "observed", "waktu": WAKTU}
    store.sync_visits(
        "khanza",
        {"KB1": {"99": {"status": "queued", "waktu": WAKTU, "source": observed}}},
        [task("KB1", 99, None)],
        now=T0,
    )
    [m] = store.claim(["bpjs"], "w", 10, 60, now=T0)
    store.record("w", [Delivered(m.id, "200", ("99", {"status": "sent", "waktu": WAKTU}))])
    assert progress_of(store, "KB1")["99"] == {"status": "sent", "waktu": WAKTU, "source": observed}


def test_outcomes_of_messages_without_a_visit_leave_visits_alone(store: Store):
    store.sync_visits("khanza", {"KB1": {"add": {"status": "queued"}}}, [add("KB1")], now=T0)
    loose = store.enqueue(NewMessage("bpjs", "KB1:task:3", b"{}", "bpjs.updatewaktu"), now=T0)
    claimed = store.claim(["bpjs"], "w", 10, 60, now=T0)
    results = [
        Delivered(m.id, None, ("3", {"status": "sent"})) for m in claimed if m.id == loose.id
    ]
    results += [Delivered(m.id) for m in claimed if m.id != loose.id]
    store.record("w", results)
    assert progress_of(store, "KB1") == {"add": {"status": "queued"}}


def test_an_outcome_of_a_lost_lease_writes_no_progress(store: Store):
    store.sync_visits("khanza", {"KB1": {"add": {"status": "queued"}}}, [add("KB1")], now=T0)
    [a] = store.claim(["bpjs"], "slow", 10, 10, now=T0)
    store.expire_leases(now=T0 + timedelta(seconds=11))
    result = store.record("slow", [Delivered(a.id, None, ("add", {"status": "sent"}))])
    assert result.lost == [a.id]
    assert progress_of(store, "KB1") == {"add": {"status": "queued"}}


# --- sending a group's earlier messages again ----------------------------------------


def chain(store: Store) -> tuple[int, int, int]:
    results = store.sync_visits(
        "khanza",
        {},
        [add("KB1"), task("KB1", 3, "KB1:add"), task("KB1", 4, "KB1:task:3")],
        now=T0,
    )
    ids = [r.id for r in results]
    for i in range(2):
        [m] = store.claim(["bpjs"], "w", 10, 60, now=T0 + timedelta(seconds=i))
        store.record("w", [Delivered(m.id)], now=T0 + timedelta(seconds=i))
    return ids[0], ids[1], ids[2]


def test_resend_predecessors_sends_the_delivered_ones_again_in_order_once(store: Store):
    a, t3, t4 = chain(store)
    [held] = store.claim(["bpjs"], "w", 10, 60, now=T0 + timedelta(seconds=5))
    assert held.id == t4
    resent = store.resend_predecessors("w", t4, "the peer had no record", now=T0)
    assert resent == [(a, "KB1:add"), (t3, "KB1:task:3")]
    rows = {m.id: m for m in Message.select()}
    assert (rows[a].status, rows[t3].status, rows[t4].status) == ("pending", "pending", "sending")
    assert rows[t4].predecessors_resent_at == T0
    events = StatusEvent.select().where(StatusEvent.message == a).order_by(StatusEvent.id)
    last = list(events)[-1]
    assert (last.from_status, last.to_status, last.details["resent_before"]) == (
        "sent",
        "pending",
        t4,
    )
    # the message waits for them: ordered, the add goes first again
    store.record("w", [RetryAt(t4, T0, "waiting", counted=False)])
    claimed = store.claim(["bpjs"], "w", 10, 60, now=T0 + timedelta(seconds=6), ordered=("bpjs",))
    assert [m.id for m in claimed] == [a]
    # once per message: delivered again, then the message itself is claimed again
    for expected in (a, t3, t4):
        if expected != a:
            [m] = store.claim(["bpjs"], "w", 10, 60, now=T0 + timedelta(seconds=7))
            assert m.id == expected
        if expected != t4:
            store.record("w", [Delivered(expected)])
    assert store.resend_predecessors("w", t4, "again", now=T0) is None
    assert Message.get_by_id(a).status == "sent"


def test_resend_predecessors_of_a_message_not_held_changes_nothing(store: Store):
    a, _, t4 = chain(store)
    assert store.resend_predecessors("w", t4, "not claimed") is None
    assert Message.get_by_id(a).status == "sent"
    assert Message.get_by_id(t4).predecessors_resent_at is None
