"""The scheduler's loops in this process (``tests/support/scheduler.py``) on a real
store and a clock the test moves: the catch-up after a time no scheduler ran,
schedules changed or removed re-armed or disarmed, a fire two schedulers claim
run once, runs succeeding, failing and retried at the instants their policy
says, ``max_concurrent``, the drain, the alert rules judged at the clock's time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.config.schedules import definition, read_definition
from daemon.domain.schedules import RunRow
from daemon.roles import scheduler as scheduler_role
from tests.support.clock import FakeClock
from tests.support.scheduler import Harness, command, scheduler, settings_for
from tests.support.waiting import eventually, stays

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # a multiple of every period below
OK = command("pass")
FAIL = command("import sys; sys.exit(1)")
# waits for the file named by its argument to exist
GATED = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.01)"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def shape(runs: list[RunRow]) -> list[tuple[datetime, int, str, str]]:
    return [(r.fire_time, r.attempt, r.trigger, r.status) for r in runs]


async def settled(h: Harness, name: str, count: int) -> list[RunRow]:
    """The ledger once ``count`` of its runs have ended and none is running here."""

    async def ended() -> list[RunRow] | None:
        runs = await h.ledger(name)
        done = [r for r in runs if r.finished_at is not None]
        return runs if len(done) >= count and not h.keeper.running else None

    found: list[RunRow] = await eventually(ended, f"{count} runs of {name} ended")
    return found


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued runs looked at every 50 ms instead of every half second."""
    monkeypatch.setattr(scheduler_role, "QUEUE_POLL", 0.05)


# --- schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catch_up", "missed", "coalesced"),
    [("300s", range(60, 301, 60), range(360, 541, 60)), ("0s", range(60, 601, 60), range(0))],
)
async def test_a_scheduler_back_after_downtime_catches_up_the_fires_of_its_window(
    db_url: str, catch_up: str, missed: range, coalesced: range
):
    """Down from T0 to T0+630 s, a 60 s schedule's ten fires fell due. The sync at
    the clock's time takes the fires up to 2 s before it: those older than
    ``catch_up`` recorded missed, the latest one within it run (``catch_up``),
    the others coalesced into it; the timer armed for the first fire after."""
    clock = FakeClock(T0)
    settings = settings_for(db_url, {"tick": {**OK, "every": "60s", "catch_up": catch_up}})
    async with scheduler(settings, clock) as first:
        await first.book.sync()
        assert first.known("tick").armed == at(60)
        assert await first.ledger("tick") == []
    clock.advance(630)
    async with scheduler(settings, clock) as back:
        await back.book.sync()
        ran = [600] if coalesced else []
        runs = await settled(back, "tick", len(missed) + len(coalesced) + len(ran))
        assert shape(runs) == sorted(
            [(at(s), 1, "cron", "missed") for s in missed]
            + [(at(s), 1, "cron", "coalesced") for s in coalesced]
            + [(at(s), 1, "catch_up", "succeeded") for s in ran]
        )
        assert {(r.due_at, r.finished_at) for r in runs} == {(at(630), at(630))}
        for run in runs:
            if run.status == "coalesced":
                assert run.note == f"caught up in the run of {at(600).isoformat()}"
            elif run.status == "missed":
                assert run.note == "no scheduler ran"
            else:
                assert run.started_at == at(630)
        assert back.known("tick").armed == at(660)
        await back.book.sync()  # read again: nothing caught up twice
        assert len(await back.ledger("tick")) == len(runs)


async def test_a_schedule_changed_in_the_store_is_rearmed_and_one_removed_disarmed(db_url: str):
    clock = FakeClock(T0)
    async with scheduler(settings_for(db_url, {}), clock) as h:

        def armed() -> tuple[datetime, list[Any]] | None:
            job = h.book.timer.get_job("op")
            return None if job is None else (job.trigger.run_date, list(job.args))

        def every(period: str) -> dict[str, Any]:
            return definition(read_definition({**OK, "every": period}))

        await h.store.put_schedule("op", every("60s"), "ops", True, now=clock.now())
        await h.book.sync()
        first = h.next_fire("op")
        assert h.known("op").row.revision == 1
        assert armed() == (at(60), ["op", 1, first, True])

        clock.advance(10)
        await h.store.put_schedule("op", every("300s"), "ops", False, now=clock.now())
        await h.book.sync()
        assert h.known("op").row.revision == 2
        assert armed() == (at(300), ["op", 2, h.next_fire("op"), True])
        # the timer of the first revision, had it been on its way, fires nothing
        clock.advance(50)
        await h.book._on_fire("op", 1, first, True)
        assert await h.ledger("op") == []

        await h.store.pause_schedule("op", True, "maintenance", "ops", now=clock.now())
        await h.book.sync()
        assert not h.known("op").active and armed() is None
        await h.store.pause_schedule("op", False, None, "ops", now=clock.now())
        await h.book.sync()
        assert h.known("op").row.revision == 4
        assert armed() == (at(300), ["op", 4, h.next_fire("op"), True])

        await h.store.remove_schedule("op", "ops", now=clock.now())
        await h.book.sync()
        assert "op" not in h.role.known and armed() is None
        assert await h.ledger("op") == []


async def test_a_timer_fire_later_than_its_catch_up_is_recorded_missed(db_url: str):
    clock = FakeClock(T0)
    settings = settings_for(db_url, {"tick": {**OK, "every": "60s", "catch_up": "30s"}})
    async with scheduler(settings, clock) as h:
        await h.book.sync()
        fire = h.next_fire("tick")
        clock.advance(60 + 31)  # the loop woke 31 s after the fire
        assert await h.book.fire(h.known("tick"), fire, "cron", on_time=True) is None
        [run] = await h.ledger("tick")
        assert shape([run]) == [(at(60), 1, "cron", "missed")]
        assert (run.note, run.due_at) == ("claimed too late", at(91))
        assert h.sample("outboxd_schedule_fires_total", schedule="tick", result="missed") == 1


# --- two schedulers -------------------------------------------------------------------------


async def test_a_fire_two_schedulers_claim_at_once_runs_once(db_url: str):
    """Two scheduler roles on one PostgreSQL schema, each its own connection, claim
    each of ten fires at the same moment: each fire is run by one of them."""
    clock = FakeClock(T0)
    settings = settings_for(db_url, {"tick": {**OK, "every": "60s"}})
    async with scheduler(settings, clock, 0) as a, scheduler(settings, clock, 1) as b:
        await asyncio.gather(a.book.sync(), b.book.sync())
        for n in range(1, 11):
            fire = a.next_fire("tick")
            assert fire.at == at(60 * n)
            clock.advance(60)
            claimed = await asyncio.gather(
                a.book.fire(a.known("tick"), fire, "cron", on_time=True),
                b.book.fire(b.known("tick"), fire, "cron", on_time=True),
            )
            assert sum(run is not None for run in claimed) == 1, claimed
            await settled(a, "tick", n)
            await eventually(lambda: not b.keeper.running, "b's run ended")
        runs = await a.ledger("tick")
        assert shape(runs) == [(at(60 * n), 1, "cron", "succeeded") for n in range(1, 11)]
        taken = [
            h.sample("outboxd_schedule_fires_total", schedule="tick", result="taken") or 0
            for h in (a, b)
        ]
        assert sum(taken) == 10
        owners = {r.lease_owner for r in runs}
        assert owners == {None}  # every lease given back at the run's end


async def test_two_schedulers_back_at_once_catch_up_once(db_url: str):
    clock = FakeClock(T0)
    settings = settings_for(db_url, {"tick": {**OK, "every": "60s", "catch_up": "300s"}})
    async with scheduler(settings, clock, 0) as a:
        await a.book.sync()
    clock.advance(630)
    async with scheduler(settings, clock, 0) as a, scheduler(settings, clock, 1) as b:
        await asyncio.gather(a.book.sync(), b.book.sync())
        runs = await settled(a, "tick", 10)
        await eventually(lambda: not b.keeper.running, "b's run ended")
        assert shape(runs) == (
            [(at(s), 1, "cron", "missed") for s in range(60, 301, 60)]
            + [(at(s), 1, "cron", "coalesced") for s in range(360, 541, 60)]
            + [(at(600), 1, "catch_up", "succeeded")]
        )


# --- runs -----------------------------------------------------------------------------------


async def test_a_run_that_succeeds_is_recorded_at_the_clocks_time(db_url: str):
    clock = FakeClock(T0)
    async with scheduler(settings_for(db_url, {"tick": {**OK, "every": "60s"}}), clock) as h:
        await h.book.sync()
        claimed = await h.fire_next("tick")
        assert claimed is not None and claimed.status == "running"
        assert claimed.lease_expires_at == at(60 + h.keeper.lease)
        [run] = await settled(h, "tick", 1)
        assert shape([run]) == [(at(60), 1, "cron", "succeeded")]
        assert (run.started_at, run.finished_at, run.output["exit"]) == (at(60), at(60), 0)
        last = h.sample("outboxd_schedule_last_success_timestamp_seconds", schedule="tick")
        assert last == at(60).timestamp()
        # the clock stood still while it ran: a run of no time at all
        assert h.sample("outboxd_job_duration_seconds_count", job="command") == 1
        assert h.sample("outboxd_job_duration_seconds_sum", job="command") == 0
        assert h.sample("outboxd_schedule_lateness_seconds_sum", schedule="tick") == 0


async def test_a_failing_run_is_retried_when_its_policy_says_by_the_clock(
    db_url: str, quick_polls: None
):
    """Backoff 60 s doubling, three attempts: the retries are due at the failure's
    time + 60 s, then + 120 s; each starts when the clock gets there, not before;
    the third failure is the last."""
    clock = FakeClock(T0)
    retry = {"max_attempts": 3, "backoff": "60s", "max_backoff": "1h"}
    settings = settings_for(db_url, {"flaky": {**FAIL, "every": "1h", "retry": retry}})
    async with scheduler(settings, clock) as h:
        await h.book.sync()
        await h.fire_next("flaky")  # at T0 + 1 h
        fired = at(3600)
        runs = await settled(h, "flaky", 1)
        assert shape(runs) == [(fired, 1, "cron", "failed"), (fired, 2, "retry", "queued")]
        assert runs[0].error is not None and "exited with 1" in runs[0].error
        assert (runs[1].due_at, runs[1].note) == (fired + timedelta(seconds=60), "retry 2 of 3")
        h.keeper.start()

        async def waiting(attempt: int) -> bool:
            return (await h.ledger("flaky"))[attempt - 1].status == "queued"

        clock.advance(59)
        await stays(lambda: waiting(2), "the retry waits for its time", 0.3)
        clock.advance(1)
        runs = await settled(h, "flaky", 2)
        assert shape(runs)[1:] == [(fired, 2, "retry", "failed"), (fired, 3, "retry", "queued")]
        assert runs[1].started_at == fired + timedelta(seconds=60)
        assert runs[2].due_at == fired + timedelta(seconds=60 + 120)
        clock.advance(119)
        await stays(lambda: waiting(3), "the second retry waits for its time", 0.3)
        clock.advance(1)
        runs = await settled(h, "flaky", 3)
        assert shape(runs) == [
            (fired, 1, "cron", "failed"),
            (fired, 2, "retry", "failed"),
            (fired, 3, "retry", "failed"),
        ]  # no fourth: the policy's attempts are spent
        assert runs[2].finished_at == fired + timedelta(seconds=180)


async def test_max_concurrent_bounds_the_runs_started_and_the_fires_claimed(
    db_url: str, tmp_path: Path, quick_polls: None
):
    """Three runs queued (run now) of a schedule that allows two at once: two
    start, the third waits until one ends; a fire meanwhile is skipped."""
    clock = FakeClock(at(-10))  # the next fire at T0, within the runs' leases
    gate = tmp_path / "gate"
    spec = command(GATED, str(gate), every="1h", overlap="allow", max_concurrent=2)
    async with scheduler(settings_for(db_url, {"pool": spec}), clock) as h:
        await h.book.sync()
        row = h.known("pool").row
        fires = [at(-30), at(-20), at(-15)]
        assert len(await h.store.queue_runs(row.id, fires, "manual", now=clock.now())) == 3
        h.keeper.start()

        async def counts() -> dict[str, int]:
            statuses = [r.status for r in await h.ledger("pool")]
            return {s: statuses.count(s) for s in set(statuses)}

        async def two_running_one_queued() -> bool:
            return await counts() == {"running": 2, "queued": 1} and len(h.keeper.running) == 2

        await eventually(two_running_one_queued, "two runs started")
        await stays(two_running_one_queued, "two running, one waiting", 0.3)
        skipped = await h.fire_next("pool")
        assert skipped is not None and skipped.status == "skipped"
        assert skipped.note == "2 runs still running (max_concurrent 2)"
        gate.touch()
        runs = await settled(h, "pool", 4)
        assert [(r.trigger, r.status) for r in runs] == [
            ("manual", "succeeded"), ("manual", "succeeded"), ("manual", "succeeded"),
            ("cron", "skipped"),
        ]  # fmt: skip


async def test_the_drain_interrupts_a_run_past_its_deadline_and_hands_back_a_late_claim(
    db_url: str, tmp_path: Path
):
    """At the drain, a run still under way at the deadline is stopped, recorded
    ``interrupted`` and retried after its backoff; a fire claimed once the runs
    are drained is not started: handed back, its retry due at once."""
    clock = FakeClock(T0)
    spec = command(
        GATED, str(tmp_path / "never"), every="1h", overlap="allow", retry={"backoff": "60s"}
    )
    async with scheduler(settings_for(db_url, {"long": spec}), clock) as h:
        await h.book.sync()
        await h.fire_next("long")
        assert len(h.keeper.running) == 1
        clock.advance(5)
        await h.keeper.drain(0.2)
        runs = await h.ledger("long")
        assert shape(runs) == [
            (at(3600), 1, "cron", "interrupted"),
            (at(3600), 2, "retry", "queued"),
        ]
        assert runs[0].error == "stopped before it finished (the scheduler was stopping)"
        assert (runs[0].finished_at, runs[1].due_at) == (at(3605), at(3605 + 60))

        late = await h.fire_next("long")  # the next fire, claimed after the drain
        assert late is not None and late.status == "running"
        runs = [r for r in await h.ledger("long") if r.fire_time == at(7200)]
        assert shape(runs) == [
            (at(7200), 1, "cron", "interrupted"),
            (at(7200), 2, "retry", "queued"),
        ]
        assert runs[0].error == "the scheduler stopped before it started"
        assert runs[1].due_at == at(7200)


# --- alerts ---------------------------------------------------------------------------------


SECRET = "whsec_" + "c2VjcmV0LWtleS1vZi10aGUtdGVzdHM="  # base64 of "secret-key-of-the-tests"


class Recorder:
    """A notify target keeping what it is sent."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def send(self, subject: str, text: str, event: dict[str, Any]) -> str:
        self.sent.append((subject, text, event))
        return "kept"


async def test_alerts_are_judged_at_the_clocks_time(db_url: str):
    """``no_success`` over 10 min: quiet at 10 min, firing at 10 min 1 s (once in
    its window), resolved by a run succeeding."""
    clock = FakeClock(T0)
    settings = settings_for(
        db_url,
        {"tick": {**OK, "every": "60s"}},
        notify={"ops": {"kind": "webhook", "url": "http://127.0.0.1:9/", "secret": SECRET}},
        alerts=[{"when": "no_success", "schedule": "tick", "over": "600s", "notify": ["ops"]}],
    )
    async with scheduler(settings, clock) as h:
        recorder = Recorder(settings.notify["ops"])
        h.role.notifiers["ops"] = recorder  # kept: its settings are the target's
        await h.book.sync()
        clock.advance(600)
        assert await h.role.judge_alerts() == 0
        clock.advance(1)
        assert await h.role.judge_alerts() == 1
        subject, text, event = recorder.sent[0]
        assert subject == "outboxd alert: no_success:tick: tick"
        assert "tick has not succeeded since it began (10m1s)" in text
        assert event == {"rule": "no_success:tick", "about": "tick", "event": "firing",
                         "at": at(601).isoformat()}  # fmt: skip
        clock.advance(1)
        assert await h.role.judge_alerts() == 0  # still firing, within its window

        await h.fire_next("tick")  # at T0 + 660 s
        await settled(h, "tick", 1)
        assert await h.role.judge_alerts() == 1
        subject, text, event = recorder.sent[1]
        assert subject.startswith("outboxd resolved: no_success:tick")
        assert (event["event"], event["at"]) == ("resolved", at(660).isoformat())
        assert f"tick succeeded at {at(660).isoformat(timespec='seconds')}" in text
        sent = await h.store.notifications()
        assert [(n.event, n.at, n.ok) for n in sent] == [
            ("resolved", at(660), True), ("firing", at(601), True),
        ]  # fmt: skip
