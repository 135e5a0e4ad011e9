"""Visits, their task progress, and poll cursors: on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from daemon.store import Store
from daemon.store.models import Message
from daemon.store.types import Delivered, Failed, NewMessage, RetryLater, UnknownPrerequisite

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
WAKTU = 1795910400000


def task(kb: str, n: int, after: str) -> NewMessage:
    body = json.dumps({"kodebooking": kb, "taskid": n, "waktu": WAKTU + n}).encode()
    return NewMessage(
        "bpjs", f"{kb}:task:{n}", body, "bpjs.updatewaktu", after_key=after, group_key=kb
    )


def add(kb: str) -> NewMessage:
    body = json.dumps({"kodebooking": kb}).encode()
    return NewMessage("bpjs", f"{kb}:add", body, "bpjs.add", group_key=kb)


def test_sync_enqueues_records_progress_and_moves_the_cursor(store: Store):
    results = store.sync_visits(
        "khanza",
        {"KB1": {"add": {"status": "queued"}, "3": {"status": "queued", "waktu": WAKTU + 3}}},
        [add("KB1"), task("KB1", 3, "KB1:add")],
        cursor="2026-11-23",
        now=T0,
    )
    assert [r.created for r in results] == [True, True]
    visit = store.get_visit("KB1")
    assert visit is not None and visit.source == "khanza"
    assert visit.task_progress == {
        "add": {"status": "queued"},
        "3": {"status": "queued", "waktu": WAKTU + 3},
    }
    assert store.get_cursor("khanza") == "2026-11-23"
    # the same poll again: nothing new, the cursor moves on
    again = store.sync_visits("khanza", {}, [add("KB1")], cursor="2026-11-23T2")
    assert [r.created for r in again] == [False]
    assert store.get_cursor("khanza") == "2026-11-23T2"


def test_task_progress_of_the_known_visits_only(store: Store):
    progress = {f"KB{i}": {"add": {"status": "queued"}} for i in range(3)}
    store.sync_visits("khanza", progress, [add(kb) for kb in progress], cursor="c", now=T0)
    found = store.task_progress(["KB0", "KB2", "KB9", "KB0"])
    assert found == {"KB0": {"add": {"status": "queued"}}, "KB2": {"add": {"status": "queued"}}}
    assert store.task_progress([]) == {}
    many = [f"KB{i}" for i in range(1200)]  # more than one statement's worth
    assert set(store.task_progress(many)) == {"KB0", "KB1", "KB2"}


def test_a_failed_sync_moves_nothing(store: Store):
    with pytest.raises(UnknownPrerequisite):
        store.sync_visits(
            "khanza",
            {"KB1": {"3": {"status": "queued"}}},
            [task("KB1", 3, "KB1:add")],  # its add is not there
            cursor="moved",
        )
    assert store.get_visit("KB1") is None
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
    store.record("w", [Delivered(a.id, "200")], now=T0, track_visits=True)
    [t3] = store.claim(["bpjs"], "w", 10, 60, now=T0)
    store.record("w", [RetryLater(t3.id, "503", delay=30)], now=T0, track_visits=True)
    progress = store.get_visit("KB1").task_progress
    assert progress["add"]["status"] == "sent"
    assert progress["3"]["status"] == "retrying" and progress["3"]["reason"] == "503"
    assert progress["3"]["waktu"] == WAKTU + 3
    assert progress["4"] == {"status": "queued"}
    [t3] = store.claim(["bpjs"], "w", 10, 60, now=T0 + timedelta(seconds=30))
    store.record("w", [Failed(t3.id, "201 Rujukan tidak valid")], now=T0, track_visits=True)
    progress = store.get_visit("KB1").task_progress
    assert progress["3"]["status"] == "failed"
    assert progress["3"]["reason"] == "201 Rujukan tidak valid"
    # a later poll cannot overwrite an outcome with "queued" or "held"
    store.sync_visits("khanza", {"KB1": {"3": {"status": "held", "reason": "x"}}}, [])
    assert store.get_visit("KB1").task_progress["3"]["status"] == "failed"


def test_untracked_outcomes_leave_visits_alone(store: Store):
    store.sync_visits("khanza", {"KB1": {"add": {"status": "queued"}}}, [add("KB1")], now=T0)
    [a] = store.claim(["bpjs"], "w", 10, 60, now=T0)
    store.record("w", [Delivered(a.id)], now=T0)
    assert store.get_visit("KB1").task_progress == {"add": {"status": "queued"}}


def test_visits_listing(store: Store):
    for i in range(3):
        store.sync_visits(
            "khanza", {f"KB{i}": {"add": {"status": "queued"}}}, [], now=T0 + timedelta(minutes=i)
        )
    assert [v.kodebooking for v in store.visits()] == ["KB2", "KB1", "KB0"]
    assert [v.kodebooking for v in store.visits(since=T0 + timedelta(minutes=1))] == ["KB2", "KB1"]
