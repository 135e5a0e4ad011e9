"""The schedule and fire-ledger operations on SQLite and PostgreSQL: a fire
claimed once, the overlap policies, queued runs, retries, interruptions, the
file's schedules synced, operators' changes audited."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from daemon.store import Store
from daemon.store.models import AuditEntry, JobRun
from daemon.store.schedules import Retry, ScheduleError

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
DEF = {"every": 60.0, "job": "http", "options": {"url": "http://127.0.0.1/"}}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def schedule(store: Store, name: str = "s") -> int:
    store.sync_file_schedules({name: DEF}, now=T0)
    row = store.schedule(name)
    assert row is not None
    return row.id


def test_a_fire_is_claimed_once(store: Store):
    sid = schedule(store)
    first = store.claim_fire(sid, at(60), "cron", "a", 30, "skip", now=at(60))
    assert first is not None and first.status == "running" and first.lease_owner == "a"
    assert store.claim_fire(sid, at(60), "cron", "b", 30, "skip", now=at(60)) is None
    assert JobRun.select().count() == 1


def test_claims_from_many_threads_start_each_fire_once(store: Store):
    """Four claimers (each a connection of its own) race for the same thirty fires."""
    sid = schedule(store)
    won: list[tuple[str, int]] = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        for i in range(30):
            run = store.claim_fire(sid, at(i), "cron", f"w{n}", 30, "allow", now=at(i))
            if run is not None:
                with lock:
                    won.append((f"w{n}", i))
        store.close()

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for _, i in won) == list(range(30))  # each fire exactly once
    assert JobRun.select().count() == 30


@pytest.mark.parametrize(
    ("overlap", "second", "third"),
    [
        ("skip", "skipped", "skipped"),
        ("queue_one", "queued", "skipped"),
        ("allow", "running", "running"),
    ],
)
def test_overlap_policies(store: Store, overlap: str, second: str, third: str):
    sid = schedule(store)
    assert store.claim_fire(sid, at(0), "cron", "a", 300, overlap, now=at(0)).status == "running"
    assert store.claim_fire(sid, at(60), "cron", "a", 300, overlap, now=at(60)).status == second
    assert store.claim_fire(sid, at(120), "cron", "a", 300, overlap, now=at(120)).status == third
    skipped = [r for r in store.runs("s") if r.status == "skipped"]
    assert all("still running" in (r.note or "") for r in skipped)


def test_a_queued_run_starts_when_the_running_one_ends(store: Store):
    sid = schedule(store)
    running = store.claim_fire(sid, at(0), "cron", "a", 300, "queue_one", now=at(0))
    queued = store.claim_fire(sid, at(60), "cron", "a", 300, "queue_one", now=at(60))
    assert queued.status == "queued"
    assert store.start_queued("a", 300, [], [sid], now=at(61)) == []  # still running
    assert store.finish_run(running.id, "a", "succeeded", output={"n": 1}, now=at(62))
    [started] = store.start_queued("b", 300, [], [sid], now=at(63))
    assert (started.id, started.status, started.lease_owner) == (queued.id, "running", "b")


def test_a_failed_run_queues_its_retry_linked_to_the_first(store: Store):
    sid = schedule(store)
    run = store.claim_fire(sid, at(0), "cron", "a", 300, "skip", now=at(0))
    assert store.finish_run(
        run.id, "a", "failed", "boom", retry=Retry(at(60), "retry 2 of 3"), now=at(1)
    )
    assert store.start_queued("a", 300, [], [sid], now=at(59)) == []  # not due yet
    [retry] = store.start_queued("a", 300, [], [sid], now=at(60))
    assert (retry.attempt, retry.trigger, retry.retry_of, retry.fire_time) == (
        2,
        "retry",
        run.id,
        at(0),
    )
    assert store.finish_run(retry.id, "a", "failed", "boom again", retry=Retry(at(180)), now=at(61))
    [third] = store.start_queued("a", 300, [], [sid], now=at(180))
    assert (third.attempt, third.retry_of) == (3, run.id)
    # the outcome of a run no longer held is not written
    assert not store.finish_run(third.id, "someone-else", "succeeded", now=at(181))


def test_an_expired_run_is_interrupted_once_and_retried(store: Store):
    sid = schedule(store)
    run = store.claim_fire(sid, at(0), "cron", "dead", 10, "skip", now=at(0))
    assert store.expired_runs(now=at(5)) == []
    [expired] = store.expired_runs(now=at(11))
    assert expired.id == run.id
    note = "its scheduler stopped renewing its lease"
    assert store.interrupt_run(run.id, expired.lease_expires_at, note, Retry(at(11)), now=at(11))
    assert not store.interrupt_run(
        run.id, expired.lease_expires_at, note, Retry(at(11)), now=at(11)
    )
    ledger = {r.attempt: r for r in store.runs("s")}
    assert ledger[1].status == "interrupted" and ledger[1].error == note
    assert (ledger[2].status, ledger[2].trigger) == ("queued", "retry")
    # a renewed lease is not interrupted
    other = store.claim_fire(sid, at(60), "cron", "live", 10, "allow", now=at(60))
    store.renew_runs("live", [other.id], 10, now=at(65))
    assert not store.interrupt_run(other.id, other.lease_expires_at, note, None, now=at(71))


def test_missed_and_coalesced_fires_are_recorded_once(store: Store):
    sid = schedule(store)
    fires = [(at(i * 60), "missed", "no scheduler ran") for i in range(5)]
    assert store.record_fires(sid, fires, now=at(400)) == 5
    assert store.record_fires(sid, fires, now=at(400)) == 0
    assert store.last_fires([sid]) == {sid: at(240)}


def test_the_files_schedules_are_added_changed_and_removed_keeping_their_ledger(store: Store):
    assert store.sync_file_schedules({"a": DEF, "b": DEF}, now=T0) == {"a": "added", "b": "added"}
    assert store.sync_file_schedules({"a": DEF, "b": DEF}, now=T0) == {}
    changed = {**DEF, "every": 120.0}
    assert store.sync_file_schedules({"a": changed}, now=at(1)) == {"a": "changed", "b": "removed"}
    b = store.schedule("b")
    assert b is not None and b.removed_at == at(1)
    assert [s.name for s in store.schedules()] == ["a"]
    assert store.schedule("a").revision == 2
    assert store.sync_file_schedules({"a": changed, "b": DEF}, now=at(2)) == {"b": "changed"}


def test_operators_schedules_and_what_they_may_not_change(store: Store):
    store.sync_file_schedules({"file": DEF}, now=T0)
    row = store.put_schedule("mine", DEF, "cli:ana", create=True, now=T0)
    assert (row.origin, row.revision) == ("operator", 1)
    with pytest.raises(ScheduleError, match="exists"):
        store.put_schedule("mine", DEF, "cli:ana", create=True)
    with pytest.raises(ScheduleError, match="defined in the YAML file"):
        store.put_schedule("file", DEF, "cli:ana", create=False)
    with pytest.raises(ScheduleError, match="defined in the YAML file"):
        store.remove_schedule("file", "cli:ana")
    paused = store.pause_schedule("file", True, "maintenance window", "cli:ana", now=at(1))
    assert (paused.paused, paused.pause_note, paused.paused_by) == (
        True,
        "maintenance window",
        "cli:ana",
    )
    assert not store.pause_schedule("file", False, None, "cli:budi", now=at(2)).paused
    store.remove_schedule("mine", "cli:ana")
    # the file leaves an operator's schedule of the same name alone
    store.put_schedule("mine", DEF, "cli:ana", create=True)
    assert store.sync_file_schedules({"file": DEF, "mine": {**DEF, "every": 5.0}}) == {
        "mine": "operator"
    }
    actions = [(a.actor, a.action, a.target) for a in AuditEntry.select().order_by(AuditEntry.id)]
    assert actions == [
        ("cli:ana", "schedule.add", "schedule mine"),
        ("cli:ana", "schedule.pause", "schedule file"),
        ("cli:budi", "schedule.resume", "schedule file"),
        ("cli:ana", "schedule.remove", "schedule mine"),
        ("cli:ana", "schedule.add", "schedule mine"),
    ]


def test_run_now_and_backfill_queue_a_run_per_fire_once(store: Store):
    sid = schedule(store)
    store.claim_fire(sid, at(60), "cron", "a", 30, "allow", now=at(60))
    queued = store.queue_runs(
        sid, [at(0), at(60), at(120)], "backfill", actor="cli:ana", now=at(200)
    )
    assert len(queued) == 2  # the fire at 60 ran already
    entry = AuditEntry.get(AuditEntry.action == "schedule.backfill")
    assert (entry.actor, entry.changed, entry.details["fires"]) == ("cli:ana", 2, 3)
