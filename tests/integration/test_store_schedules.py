"""The schedule and fire-ledger operations on SQLite and PostgreSQL: a fire
claimed once, the overlap policies, queued runs, retries, interruptions, the
file's schedules synced, operators' changes audited."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.schedules import Claim, Retry, RunEnd, ScheduleError
from daemon.store.models import AuditEntry, JobRun
from daemon.store.sync import Store

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


def test_fires_claimed_together_in_order_the_others_taken_or_held_back(store: Store):
    """One transaction for the fires of a moment: each claim answered in order, a
    fire another scheduler has answered None, a schedule with a run under way
    held back by its policy, two fires of one schedule in a batch as if one after
    the other."""
    a, b, c = (schedule(store, name) for name in ("a", "b", "c"))
    assert store.claim_fire(b, at(60), "cron", "other", 30, "skip", now=at(60)) is not None
    store.claim_fire(c, at(0), "cron", "other", 300, "skip", now=at(0))  # c: one running
    claims = [
        Claim(a, at(60), "cron", "skip"),
        Claim(b, at(60), "cron", "skip"),  # the other scheduler's already
        Claim(c, at(60), "cron", "skip"),  # its last run still running
        Claim(a, at(120), "catch_up", "queue_one", "late"),  # behind a's first
    ]
    runs = store.claim_fires(claims, "me", 30, now=at(60))
    assert [r.status if r else None for r in runs] == ["running", None, "skipped", "queued"]
    first, _, skipped, queued = runs
    assert first is not None and (first.schedule, first.schedule_id) == ("a", a)
    assert first.lease_owner == "me" and first.fire_time == at(60)
    assert skipped is not None and skipped.note == "the last run was still running"
    assert queued is not None and (queued.trigger, queued.note) == ("catch_up", "late")
    assert JobRun.select().count() == 5  # b's and c's first, and these three


def test_ends_written_together_each_answered(store: Store):
    sid = schedule(store)
    runs = [store.claim_fire(sid, at(i * 60), "cron", "me", 300, "allow", now=at(0))
            for i in range(3)]  # fmt: skip
    assert all(runs)
    theirs = store.claim_fire(sid, at(600), "cron", "them", 300, "allow", now=at(0))
    ends = [
        RunEnd(runs[0].id, "succeeded", output={"rows": 3}),
        RunEnd(runs[1].id, "failed", "boom", retry=Retry(at(200), "retry 2 of 3")),
        RunEnd(theirs.id, "succeeded"),  # not mine: left as it is
        RunEnd(runs[2].id, "interrupted", "stopping"),
    ]
    assert store.finish_runs(ends, "me", now=at(100)) == [True, True, False, True]
    got = {r.id: r for r in JobRun.select()}
    assert got[runs[0].id].status == "succeeded" and got[runs[0].id].output == {"rows": 3}
    assert got[runs[1].id].status == "failed" and got[runs[1].id].error == "boom"
    assert got[theirs.id].status == "running" and got[theirs.id].lease_owner == "them"
    assert got[runs[2].id].status == "interrupted"
    [retry] = [r for r in got.values() if r.trigger == "retry"]
    assert (retry.attempt, retry.retry_of, retry.status) == (2, runs[1].id, "queued")
    with pytest.raises(ValueError, match="not how a run ends"):
        store.finish_runs([RunEnd(runs[0].id, "running")], "me")


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


# --- max_concurrent, max_runs, cancelling a run ------------------------------------------------


def test_allow_with_max_concurrent_skips_a_fire_beyond_the_bound(store: Store):
    sid = schedule(store)
    bound = [Claim(sid, at(i), "cron", "allow", max_concurrent=2) for i in range(4)]
    first = store.claim_fires(bound[:1], "a", 300, now=at(0))
    rest = store.claim_fires(bound[1:], "b", 300, now=at(1))  # another scheduler, later
    statuses = [r.status if r else None for r in first + rest]
    assert statuses == ["running", "running", "skipped", "skipped"]
    assert "2 runs still running (max_concurrent 2)" in (rest[1].note or "")  # type: ignore[union-attr]
    # one ends: the next fire runs again
    assert store.finish_run(first[0].id, "a", "succeeded", now=at(5))  # type: ignore[union-attr]
    [again] = store.claim_fires([Claim(sid, at(6), "cron", "allow", max_concurrent=2)], "a", 300,
                                now=at(6))  # fmt: skip
    assert again is not None and again.status == "running"
    # unbounded, as before
    [free] = store.claim_fires([Claim(sid, at(7), "cron", "allow")], "a", 300, now=at(7))
    assert free is not None and free.status == "running"


def test_a_queued_run_waits_while_max_concurrent_runs_run(store: Store):
    sid = schedule(store)
    for i in range(2):
        store.claim_fire(sid, at(i), "cron", "a", 300, "allow", now=at(i))
    [queued] = store.queue_runs(sid, [at(10)], "manual", now=at(10))
    bounds = {sid: 2}
    assert store.start_queued("b", 300, [sid], [sid], now=at(11), max_concurrent=bounds) == []
    assert [r.id for r in store.start_queued("b", 300, [sid], [sid], now=at(11),
                                              max_concurrent={sid: 3})] == [queued]  # fmt: skip


def test_max_runs_counts_the_runs_its_fires_made_across_schedulers(store: Store):
    """Runs made (running or queued), whoever claimed them and however they ended,
    count; skipped fires, retries and runs asked for do not; past the count a
    fire is not recorded, its answer ``ended``."""
    sid = schedule(store)

    def claim(owner: str, second: int) -> str | None:
        [run] = store.claim_fires(
            [Claim(sid, at(second), "cron", "skip", max_runs=3)], owner, 300, now=at(second)
        )
        return run.status if run else None

    assert claim("a", 0) == "running"
    assert claim("b", 0) is None  # the other scheduler's: not counted twice
    assert claim("b", 1) == "skipped"  # a's run still running: not a run made
    [first] = store.runs("s", statuses=["running"])
    store.finish_run(first.id, "a", "failed", retry=Retry(at(2)), now=at(2))
    store.queue_runs(sid, [at(3)], "manual", now=at(3))  # run now: not counted
    assert claim("b", 4) == "queued"  # behind the queued ones: a run made
    assert store.schedule("s").runs_made == 2  # type: ignore[union-attr]
    while store.start_queued("a", 300, [], [sid], now=at(7)):  # the retry, run now, fire 4
        for run in store.runs("s", statuses=["running"]):
            store.finish_run(run.id, "a", "succeeded", now=at(7))
    assert claim("b", 8) == "running"
    assert store.schedule("s").runs_made == 3  # type: ignore[union-attr]
    for run in store.runs("s", statuses=["running"]):
        store.finish_run(run.id, "b", "succeeded", now=at(9))
    assert claim("a", 10) == "ended"
    assert claim("b", 11) == "ended"
    assert not [r for r in store.runs("s") if r.fire_time >= at(10)]  # not recorded
    assert store.schedule("s").runs_made == 3  # type: ignore[union-attr]


def test_max_runs_counts_while_a_schedule_has_one_anew_when_it_is_added_again(store: Store):
    sid = schedule(store)
    store.claim_fires([Claim(sid, at(0), "cron", "allow")], "a", 300, now=at(0))
    assert store.schedule("s").runs_made == 0  # type: ignore[union-attr]  # none: not counted
    store.sync_file_schedules({"s": {**DEF, "max_runs": 5}}, now=at(1))
    store.claim_fires([Claim(sid, at(2), "cron", "allow", max_runs=5)], "a", 300, now=at(2))
    assert store.schedule("s").runs_made == 1  # type: ignore[union-attr]
    store.sync_file_schedules({"s": {**DEF, "max_runs": 9}}, now=at(3))  # raised: kept
    assert store.schedule("s").runs_made == 1  # type: ignore[union-attr]
    store.sync_file_schedules({"s": DEF}, now=at(4))  # no max_runs: forgotten
    assert store.schedule("s").runs_made == 0  # type: ignore[union-attr]
    store.sync_file_schedules({"s": {**DEF, "max_runs": 5}}, now=at(5))
    store.claim_fires([Claim(sid, at(6), "cron", "allow", max_runs=5)], "a", 300, now=at(6))
    store.sync_file_schedules({}, now=at(7))  # removed
    store.sync_file_schedules({"s": {**DEF, "max_runs": 5}}, now=at(8))  # added again
    assert store.schedule("s").runs_made == 0  # type: ignore[union-attr]


def test_cancelling_a_queued_run_ends_it_at_once_audited(store: Store):
    sid = schedule(store)
    [queued] = store.queue_runs(sid, [at(0)], "manual", now=at(0))
    run, changed = store.cancel_run(queued, "api:alice", "wrong day", schedule="s", now=at(1))
    assert changed and run.status == "cancelled"
    assert run.error == "cancelled by api:alice: wrong day"
    assert (run.cancel_requested_by, run.cancel_note) == ("api:alice", "wrong day")
    assert store.start_queued("a", 300, [], [sid], now=at(2)) == []  # never starts
    [entry] = AuditEntry.select().where(AuditEntry.action == "run.cancel")
    assert (entry.actor, entry.target) == ("api:alice", f"run {queued} of s")
    with pytest.raises(ScheduleError, match="is cancelled: only a queued or running run") as exc:
        store.cancel_run(queued, "api:alice", schedule="s")
    assert exc.value.kind == "conflict"
    with pytest.raises(ScheduleError, match="no run") as exc:
        store.cancel_run(queued, "api:alice", schedule="other")
    assert exc.value.kind == "missing"
    with pytest.raises(ScheduleError, match="no run 999999"):
        store.cancel_run(999999, "api:alice")


def test_cancelling_a_running_run_asks_its_scheduler_which_records_it_not_retried(store: Store):
    sid = schedule(store)
    run = store.claim_fire(sid, at(0), "cron", "a", 300, "skip", now=at(0))
    assert run is not None
    assert store.cancel_requests("a", [run.id]) == []
    asked, changed = store.cancel_run(run.id, "cli:bob", None, now=at(1))
    assert changed and asked.status == "running" and asked.cancel_requested_by == "cli:bob"
    assert store.cancel_run(run.id, "cli:carol")[1] is False  # asked already: nothing changes
    assert store.cancel_requests("b", [run.id]) == []  # not b's
    [seen] = store.cancel_requests("a", [run.id])
    assert seen.cancel_text == "cancelled by cli:bob"
    # the scheduler stopped the job: cancelled; or it failed meanwhile: failed, not retried
    retry = Retry(at(60))
    assert store.finish_run(run.id, "a", "cancelled", "cancelled by cli:bob", retry=retry)
    [only] = store.runs("s")
    assert only.status == "cancelled"
    other = store.claim_fire(sid, at(100), "cron", "a", 300, "skip", now=at(100))
    assert other is not None
    store.cancel_run(other.id, "cli:bob", now=at(101))
    assert store.finish_run(other.id, "a", "failed", "boom", retry=retry, now=at(102))
    assert [r.status for r in store.runs("s")] == ["failed", "cancelled"]  # no retry queued
    # a scheduler stopping (drain) with a cancel asked for: cancelled
    third = store.claim_fire(sid, at(200), "cron", "a", 300, "skip", now=at(200))
    assert third is not None
    store.cancel_run(third.id, "cli:bob", "enough", now=at(201))
    store.finish_run(third.id, "a", "interrupted", "stopped", retry=retry, now=at(202))
    assert store.runs("s", limit=1)[0].status == "cancelled"
    assert store.runs("s", limit=1)[0].error == "cancelled by cli:bob: enough"


def test_a_run_whose_scheduler_died_with_a_cancel_asked_for_is_cancelled_not_retried(store):
    sid = schedule(store)
    run = store.claim_fire(sid, at(0), "cron", "dead", 30, "skip", now=at(0))
    assert run is not None
    store.cancel_run(run.id, "cli:bob", "stuck", now=at(1))
    [expired] = store.expired_runs(now=at(40))
    assert store.interrupt_run(run.id, expired.lease_expires_at, "lease ran out", Retry(at(41)),
                               now=at(40))  # fmt: skip
    [only] = store.runs("s")
    assert only.status == "cancelled" and only.error.startswith("cancelled by cli:bob: stuck")


def test_notifications_are_listed_newest_first_a_page_at_a_time(store: Store):
    for i, (event, ok) in enumerate([("firing", True), ("firing", False), ("resolved", True)]):
        store.record_notification(
            "run_failed:s", "s", event, "mail" if i else "hook", ok, f"answer {i}",
            now=at(i), title=f"outboxd {event}", text=f"text {i}",
        )  # fmt: skip
    store.record_notification("report:daily", "daily", "report", "mail", True, "250", now=at(9))
    every = store.notifications()
    assert [n.event for n in every] == ["report", "resolved", "firing", "firing"]
    assert every[1].title == "outboxd resolved" and every[1].text == "text 2"
    assert [n.answer for n in store.notifications(rule="run_failed:s", events=["firing"])] == [
        "answer 1", "answer 0"]  # fmt: skip
    assert [n.answer for n in store.notifications(ok=False)] == ["answer 1"]
    assert [n.target for n in store.notifications(subject="s", target="hook")] == ["hook"]
    page = store.notifications(limit=2)
    assert [n.id for n in store.notifications(limit=2, before_id=page[-1].id)] == [
        every[2].id, every[3].id]  # fmt: skip
