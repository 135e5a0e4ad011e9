"""The scheduler role: cron and interval jobs from the database, each fire run
once however many schedulers run, a ledger of every fire, retries, alerts.

Its children on the frame:

- ``schedules``: the YAML file's schedules written to the database at start and
  on a reload (by name; the database is the truth, the CLI adds its own), then
  read back every ``sync_interval``: a schedule added, changed, paused or
  resumed anywhere is seen within seconds. Each live schedule has its next fire
  armed on APScheduler's timer (``daemon.scheduling.fires`` computes it; APScheduler only
  wakes the loop at that instant, its misfire grace off). At a fire the run is
  claimed by inserting it (unique on schedule, fire time and attempt): the
  scheduler that inserts it runs it, under the schedule's overlap policy. A
  schedule seen for the first time since its last fire catches up: the fires it
  missed beyond ``catch_up`` are recorded ``missed``, the latest one within it
  runs (trigger ``catch_up``) and the others are recorded ``coalesced``.
  A schedule's fires stop at its ``end_at`` and once it has made ``max_runs``
  runs (the claim counts them, in the database: however many schedulers run).
- ``runs``: the runs this process holds, their leases renewed; queued runs
  started as their policy allows (a retry, ``queue_one``, run now, backfill;
  ``max_concurrent``); runs whose scheduler died (a lease run out) marked
  ``interrupted`` and retried as their schedule says; runs an operator asked to
  cancel (a column read every ``CANCEL_POLL``) stopped and recorded
  ``cancelled``, not retried. At SIGTERM the runs under way get the drain
  deadline to finish; what it had to stop is marked ``interrupted`` (and
  retried, by another scheduler or this one's restart).
- ``alerts``: the alert rules judged every ``alert_interval`` and notified.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from daemon.config.schedules import (
    DefinitionError,
    definition,
    read_definition,
    retry_at,
    timing_of,
    zone_of,
)
from daemon.config.settings import SchedulerRoleSettings, ScheduleSettings, Settings
from daemon.domain.clock import SYSTEM_CLOCK, Clock
from daemon.domain.errors import StoreError, StoreUnavailable
from daemon.domain.schedules import Claim, Retry, RunEnd, RunRow, ScheduleRow
from daemon.domain.statuses import (
    CANCELLED_RUN,
    COALESCED,
    ENDED,
    INTERRUPTED,
    MISSED,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
)
from daemon.jobs.kind import JobContext, JobFailed
from daemon.jobs.registry import JOB_KINDS
from daemon.notify.kind import Notifier, NotifyFailed
from daemon.notify.registry import build_notifier
from daemon.notify.rules import AlertSettings, evaluate, resolution
from daemon.notify.words import alert_message, page_url
from daemon.runtime.frame import ChildSpec, Context, RoleBase, TaskChild
from daemon.runtime.metrics import SchedulerMetrics
from daemon.scheduling.fires import Fire, Timing, fires_between, next_fires

log = logging.getLogger("outboxd.scheduler")
MAX_CATCH_UP = 10_000  # fires recorded one by one when a scheduler comes back; the rest summed
QUEUE_POLL = 0.5  # seconds between looks at queued runs
CANCEL_POLL = 1.0  # seconds between looks for cancels asked for, while runs are held
STORE_RETRY = 1.0
CATCH_UP_GRACE = 2.0  # seconds: fires this recent at a sync are the timer's, not caught up
ON_TIME = CATCH_UP_GRACE  # seconds: a fire claimed this late by a scheduler up at it is on time


@dataclass
class Known:
    """A live schedule as this scheduler reads it."""

    row: ScheduleRow
    spec: ScheduleSettings
    timing: Timing
    armed: datetime | None = None  # the fire its timer waits for

    @property
    def active(self) -> bool:
        return self.spec.enabled and not self.row.paused

    @property
    def finished(self) -> bool:
        """It has made its ``max_runs`` runs: no more fires (its retries, and runs
        an operator asks for, still run)."""
        return self.spec.max_runs is not None and self.row.runs_made >= self.spec.max_runs


class Scheduler(RoleBase):
    """The role. Its children read the time through ``clock``: the fire times they
    compare, the instants they write, the retries they set (APScheduler's timer
    wakes them in the system's time)."""

    def __init__(self, context: Context, clock: Clock = SYSTEM_CLOCK) -> None:
        self.ctx = context
        self.clock = clock  # the time its schedules, runs and alerts read
        self.metrics = SchedulerMetrics(context.metrics.registry)
        self.known: dict[str, Known] = {}  # by schedule name
        self.broken: dict[str, str] = {}  # schedules whose stored definition does not read
        self.keeper: RunKeeper | None = None
        self.notifiers: dict[str, Notifier] = {}

    def count_token(self, channel: str, result: str) -> None:
        """An OAuth2 token fetch a job made (``JobContext.count_token``)."""
        self.metrics.token_fetches.labels(channel, result).inc()

    @property
    def role_settings(self) -> SchedulerRoleSettings:
        return self.ctx.settings.roles.scheduler

    def children(self, settings: Settings) -> list[ChildSpec]:
        file = {name: definition(s) for name, s in settings.schedules.items()}
        rules = (settings.timezone, settings.holidays, file)
        alerting = (settings.alerts, settings.notify)
        role = settings.roles.scheduler
        return [
            ChildSpec("schedules", rules, lambda: ScheduleBook(self, file)),
            ChildSpec("runs", (role.run_lease,), lambda: RunKeeper(self)),
            ChildSpec("alerts", alerting, lambda: TaskChild("alerts", self._alert_loop)),
        ]

    def problems(self) -> list[str]:
        return [f"schedule {name}: {why}" for name, why in sorted(self.broken.items())]

    # --- notifications ----------------------------------------------------------------

    def notifier(self, target: str) -> Notifier | None:
        settings = self.ctx.settings.notify.get(target)
        if settings is None:
            return None
        if (
            target not in self.notifiers
            or getattr(self.notifiers[target], "settings", None) != settings
        ):
            self.notifiers[target] = build_notifier(settings)
        return self.notifiers[target]

    async def notify(
        self,
        targets: list[str],
        subject: str,
        text: str,
        rule: str,
        about: str,
        event: str,
    ) -> list[str]:
        """Send to each target, record each notification; one line per target."""
        answers = []
        for target in targets:
            notifier = self.notifier(target)
            at = self.clock.now().isoformat()
            payload = {"rule": rule, "about": about, "event": event, "at": at}
            try:
                if notifier is None:
                    raise NotifyFailed(f"no notify target {target!r}")
                answer, ok = await notifier.send(subject, text, payload), True
            except NotifyFailed as exc:
                answer, ok = str(exc), False
            except Exception as exc:  # a bug in a notifier must not stop the others
                log.exception("notifier failed", extra={"target": target})
                answer, ok = f"{type(exc).__name__}: {exc}", False
            self.metrics.notifications.labels(target, "sent" if ok else "failed").inc()
            level = logging.INFO if ok else logging.WARNING
            log.log(level, "notification", extra={"target": target, "rule": rule, "ok": ok})
            with contextlib.suppress(StoreError):
                await self.ctx.store.record_notification(
                    rule, about, event, target, ok, answer, now=self.clock.for_store(),
                    title=subject, text=text,
                )  # fmt: skip
            answers.append(f"{target}: {answer}" if ok else f"failed {target}: {answer}")
        return answers

    async def _alert_loop(self) -> None:
        interval = self.role_settings.alert_interval
        while True:
            try:
                await self.judge_alerts()
            except StoreUnavailable as exc:
                log.warning("alerts not judged: the database", extra={"error": str(exc)})
            await asyncio.sleep(interval)

    async def judge_alerts(self, now: datetime | None = None) -> int:
        """Judge every rule once and notify what changed; answers how many
        notifications went out."""
        now = now if now is not None else self.clock.for_store()
        rules: list[AlertSettings] = list(self.ctx.settings.alerts)
        sent = 0
        by_window: dict[float, list[AlertSettings]] = {}
        for rule in rules:
            by_window.setdefault(rule.window, []).append(rule)
        for window, group in by_window.items():
            facts = await self.ctx.store.alert_inputs(window, now)
            for rule in group:
                firing = evaluate(rule, facts)
                for change in await self.ctx.store.move_alerts(rule.rule, firing, window, now):
                    control = self.ctx.settings.control
                    page = page_url(control.host, control.port, rule.when, change.subject)
                    zone = ZoneInfo(self.ctx.settings.timezone)
                    cleared = (
                        resolution(rule, change.subject, facts)
                        if change.event == "resolved"
                        else None
                    )
                    subject, text = alert_message(rule.rule, rule.when, change, zone, page, cleared)
                    await self.notify(
                        rule.notify, subject, text, rule.rule, change.subject, change.event
                    )
                    sent += 1
        return sent


# --- schedules and their timer ------------------------------------------------------------


@dataclass
class Claiming:
    """A fire waiting to be claimed, and the future its caller awaits."""

    entry: Known
    fire: Fire
    trigger: str
    on_time: bool  # the timer was set before its instant: the scheduler was up at it
    done: asyncio.Future[RunRow | None]


class ScheduleBook:
    """The schedules: written from the file, read back, each with its next fire armed."""

    def __init__(self, role: Scheduler, file: Mapping[str, dict[str, Any]]) -> None:
        self.role = role
        self.file = file
        self.timer = AsyncIOScheduler(
            job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 100},
            timezone=UTC,
        )
        self.task: asyncio.Task[None] | None = None
        self.caught_up: set[tuple[int, int]] = set()  # (schedule id, revision) caught up
        # fires due at one moment are claimed together, one transaction for all
        self.claiming: list[Claiming] = []
        self.claimer: asyncio.Task[None] | None = None

    @property
    def store(self) -> Any:
        return self.role.ctx.store

    def start(self) -> list[asyncio.Task[None]]:
        self.task = asyncio.create_task(self._run(), name="schedules")
        return [self.task]

    async def drain(self, timeout: float) -> None:
        if self.timer.running:
            self.timer.shutdown(wait=False)  # no fire after this
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.claimer is not None:  # the claims under way: their runs are handed back
            await asyncio.wait([self.claimer], timeout=timeout)

    def problems(self) -> list[str]:
        return ["schedules stopped"] if self.task is not None and self.task.done() else []

    async def _run(self) -> None:
        await self._write_file_schedules()
        self.timer.start()
        while True:
            try:
                await self.sync()
            except StoreUnavailable as exc:
                log.warning("schedules not read: the database", extra={"error": str(exc)})
            await asyncio.sleep(self.role.role_settings.sync_interval)

    async def _write_file_schedules(self) -> None:
        while True:
            try:
                changes = await self.store.sync_file_schedules(
                    dict(self.file), now=self.role.clock.for_store()
                )
                break
            except StoreUnavailable as exc:
                log.warning("schedules not written: the database", extra={"error": str(exc)})
                await asyncio.sleep(STORE_RETRY)
        for name, change in sorted(changes.items()):
            if change == "operator":
                log.warning(
                    "schedule %s is defined in the file and by an operator; the operator's "
                    "stays (remove it with `outboxd schedules remove` to use the file's)",
                    name,
                )
            else:
                log.info("schedule %s %s", name, change)

    async def sync(self, now: datetime | None = None) -> None:
        """Read the schedules; arm what is new or changed, disarm what is gone."""
        rows = {row.name: row for row in await self.store.schedules()}
        known = self.role.known
        for name in list(known):
            if name not in rows:
                self._disarm(name)
                del known[name]
                log.info("schedule %s is gone", name)
        for name, row in rows.items():
            current = known.get(name)
            if current is not None and current.row.revision == row.revision:
                current.row = row  # its count of runs made, which another scheduler moves
                if current.finished and current.armed is not None:
                    self._disarm(name)
                    current.armed = None
                continue
            try:
                spec = read_definition(row.definition)
            except DefinitionError as exc:
                if self.role.broken.get(name) != str(exc):
                    log.error("schedule %s cannot be read: %s", name, exc)
                self.role.broken[name] = str(exc)
                self._disarm(name)
                known.pop(name, None)
                continue
            self.role.broken.pop(name, None)
            entry = Known(row, spec, timing_of(spec, self.role.ctx.settings))
            self._disarm(name)
            known[name] = entry
            if entry.active and not entry.finished:
                # one instant for both: the catch-up takes the fires up to it, the timer
                # the next one after it (a fire between the two, were each to read the
                # clock, would get no run and no row). The instant is a little in the
                # past: a fire of the last moments is the timer's, claimed as any late
                # fire, not caught up (another scheduler may be claiming it right now)
                moment = (now or self.role.clock.now()) - timedelta(seconds=CATCH_UP_GRACE)
                await self._catch_up(entry, moment)
                self._arm(entry, max(moment, row.updated_at))  # never a fire before its change

    # --- the timer ------------------------------------------------------------------

    def _arm(self, entry: Known, after: datetime, up: bool = False) -> None:
        """The timer set for the next fire after ``after``. It is on time when the
        timer is set before its instant, or when ``up``: armed from the fire before
        it, claimed on time (this scheduler was up all along)."""
        start = max(after, entry.armed) if entry.armed else after
        found = next_fires(entry.timing, start) if not entry.finished else []
        if not found:
            entry.armed = None
            return
        fire = found[0]
        entry.armed = fire.at
        self.timer.add_job(
            self._on_fire,
            DateTrigger(run_date=fire.at),
            args=[entry.row.name, entry.row.revision, fire, up or fire.at > self.role.clock.now()],
            id=entry.row.name,
            replace_existing=True,
        )

    def _disarm(self, name: str) -> None:
        with contextlib.suppress(Exception):  # not armed: nothing to do
            self.timer.remove_job(name)

    async def _on_fire(self, name: str, revision: int, fire: Fire, on_time: bool) -> None:
        entry = self.role.known.get(name)
        if entry is None or entry.row.revision != revision or not entry.active or entry.finished:
            return
        self._arm(entry, fire.at, up=on_time)  # the next fire's timer now, whatever the claim takes
        await self.fire(entry, fire, "cron", on_time)

    async def fire(
        self, entry: Known, fire: Fire, trigger: str, on_time: bool = False
    ) -> RunRow | None:
        """Claim a fire and start its run when it is this scheduler's. The fires of
        one moment are claimed together: the first starts a claimer that takes
        every fire queued by the time it runs, and the ones after it, batch by batch.
        ``on_time``: the timer was set before the fire's instant (``_arm``)."""
        done: asyncio.Future[RunRow | None] = asyncio.get_running_loop().create_future()
        self.claiming.append(Claiming(entry, fire, trigger, on_time, done))
        if self.claimer is None or self.claimer.done():
            self.claimer = asyncio.create_task(self._claim(), name="schedules.claims")
        return await asyncio.shield(done)

    async def _claim(self) -> None:
        while self.claiming:
            batch, self.claiming = self.claiming, []
            try:
                claimed = await self._claim_batch(batch)
            except Exception as exc:  # a bug: each waiting fire hears of it, the loop goes on
                log.exception("fires not claimed")
                claimed = [exc] * len(batch)  # type: ignore[list-item]
            for item, result in zip(batch, claimed, strict=True):
                done = item.done
                if done.done():
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    async def _claim_batch(self, batch: list[Claiming]) -> list[RunRow | None]:
        """The timer's fires are claimed when on time (``ON_TIME`` late at most, the
        scheduler up at their instant) or within ``catch_up``; later than both, they
        are missed. A fire that fell due before this scheduler armed it, too late for
        ``catch_up`` but recent enough for a scheduler up at it to be claiming it
        now, is left to that one: missed only if no one has it once ``ON_TIME`` is past."""
        role = self.role
        results: list[RunRow | None] = [None] * len(batch)
        todo: list[int] = []
        for i, item in enumerate(batch):
            entry, fire = item.entry, item.fire
            late = (self.role.clock.now() - fire.at).total_seconds()
            if item.trigger != "cron" or late <= self._allowed(entry, item.on_time):
                todo.append(i)
            elif item.on_time or late > ON_TIME:  # woke too late to run it
                with contextlib.suppress(StoreUnavailable):
                    await self.store.record_fires(
                        entry.row.id,
                        [(fire.at, MISSED, "claimed too late")],
                        now=role.clock.for_store(),
                    )
                role.metrics.fires.labels(entry.row.name, MISSED).inc()
            else:
                self._record_missed_later(entry, fire)
        while todo:
            claims = [
                Claim(batch[i].entry.row.id, batch[i].fire.at, batch[i].trigger,
                      batch[i].entry.spec.overlap, batch[i].fire.note,
                      batch[i].entry.spec.max_concurrent, batch[i].entry.spec.max_runs)
                for i in todo
            ]  # fmt: skip
            try:
                runs = await self.store.claim_fires(
                    claims, role.ctx.owner, role.role_settings.run_lease, now=role.clock.for_store()
                )
                break
            except StoreUnavailable as exc:
                log.warning("fires not claimed yet: the database", extra={"error": str(exc)})
                await asyncio.sleep(STORE_RETRY)
                todo = [i for i in todo if self._still_due(batch[i])]
        else:
            return results
        now = role.clock.now()
        for i, run in zip(todo, runs, strict=True):
            entry = batch[i].entry
            name = entry.row.name
            results[i] = run
            if run is None:
                role.metrics.fires.labels(name, "taken").inc()
                continue
            if run.status == ENDED:  # not recorded: the schedule has made its runs
                role.metrics.fires.labels(name, ENDED).inc()
                self._ended(entry)
                continue
            if run.status in (RUNNING, QUEUED):
                entry.row = dataclasses.replace(entry.row, runs_made=entry.row.runs_made + 1)
                if entry.finished:
                    self._ended(entry)
            role.metrics.lateness.labels(name).observe(
                max(0.0, (now - run.fire_time).total_seconds())
            )
            result = {RUNNING: "started", QUEUED: "queued"}.get(run.status, run.status)
            role.metrics.fires.labels(name, result).inc()
            if run.status == RUNNING:
                await self._start(run, entry)
            elif run.status == SKIPPED:
                log.info("fire skipped: %s", run.note, extra={"schedule": name})
        return results

    def _ended(self, entry: Known) -> None:
        """The schedule has made its ``max_runs`` runs: no fire after this."""
        limit = entry.spec.max_runs or 0
        if entry.row.runs_made < limit:
            entry.row = dataclasses.replace(entry.row, runs_made=limit)
        if entry.armed is not None:
            self._disarm(entry.row.name)
            entry.armed = None
            log.info("schedule %s has made its %d runs (max_runs): no more fires",
                     entry.row.name, limit)  # fmt: skip

    @staticmethod
    def _allowed(entry: Known, on_time: bool) -> float:
        """How late a fire of the timer may be claimed: within ``catch_up``, and
        within ``ON_TIME`` when the scheduler was up at its instant (``catch_up: 0``
        means no catch-up after a time no scheduler ran, not no run at all)."""
        return max(entry.spec.catch_up, ON_TIME) if on_time else entry.spec.catch_up

    def _record_missed_later(self, entry: Known, fire: Fire) -> None:
        """Record a fire missed once ``ON_TIME`` is past it, unless a scheduler up at
        its instant claimed it by then (a run in the ledger is left as it is)."""
        self.timer.add_job(
            self._record_missed,
            DateTrigger(run_date=fire.at + timedelta(seconds=ON_TIME)),
            args=[entry, fire],
            id=f"{entry.row.name}@{fire.at.isoformat()}",  # a name has no @
            replace_existing=True,
        )

    async def _record_missed(self, entry: Known, fire: Fire) -> None:
        with contextlib.suppress(StoreUnavailable):
            note = "no scheduler ran"
            fires = [(fire.at, MISSED, note)]
            if await self.store.record_fires(entry.row.id, fires, now=self.role.clock.for_store()):
                self.role.metrics.fires.labels(entry.row.name, MISSED).inc()

    def _still_due(self, item: Claiming) -> bool:
        """A fire the database did not take: worth claiming again as long as it may
        be claimed at all; past that, it is lost, and said so."""
        entry, fire = item.entry, item.fire
        late = (self.role.clock.now() - fire.at).total_seconds()
        on_time = item.on_time and item.trigger == "cron"
        if late <= self._allowed(entry, on_time):
            return True
        log.error(
            "fire not claimed: the database did not answer within its catch-up window",
            extra={"schedule": entry.row.name, "fire": fire.at.isoformat()},
        )
        self.role.metrics.fires.labels(entry.row.name, MISSED).inc()
        return False

    async def _start(self, run: RunRow, entry: Known) -> None:
        keeper = self.role.keeper
        if keeper is not None and not keeper.stopping.is_set():
            keeper.launch(run, entry.spec)
            return
        # claimed as the process stops: handed back, for a scheduler to run it again
        now = self.role.clock.now()
        due = retry_at(entry.spec, run.attempt, now)
        retry = Retry(now, "the scheduler stopped before it started") if due else None
        end = RunEnd(run.id, "interrupted", "the scheduler stopped before it started", None, retry)
        with contextlib.suppress(StoreUnavailable):
            await self.store.finish_runs(
                [end], self.role.ctx.owner, now=self.role.clock.for_store()
            )

    # --- catching up ----------------------------------------------------------------------

    async def _catch_up(self, entry: Known, now: datetime) -> None:
        """Fires that fell due since the schedule's last fire (or since it was made
        or changed) while no scheduler ran: beyond ``catch_up``, missed; the latest
        within it runs once, the others are coalesced into it."""
        key = (entry.row.id, entry.row.revision)
        if key in self.caught_up:
            return
        self.caught_up.add(key)
        last = (await self.store.last_fires([entry.row.id])).get(entry.row.id)
        since = max(last, entry.row.updated_at) if last else entry.row.updated_at
        due: list[Fire] = []
        more = 0
        for fire in fires_between(entry.timing, since, now):
            if len(due) < MAX_CATCH_UP:
                due.append(fire)
            else:
                more += 1
        if not due:
            return
        window = now - timedelta(seconds=entry.spec.catch_up)
        missed = [f for f in due if f.at < window]
        within = [f for f in due if f.at >= window]
        name = entry.row.name
        stamp = self.role.clock.for_store()
        if missed:
            notes = [(f.at, MISSED, "no scheduler ran") for f in missed]
            if more:
                last_note = f"no scheduler ran; and {more} later fires not listed one by one"
                notes[-1] = (missed[-1].at, MISSED, last_note)
            recorded = await self.store.record_fires(entry.row.id, notes, now=stamp)
            self.role.metrics.fires.labels(name, MISSED).inc(recorded)
            if recorded:
                log.warning("fires missed", extra={"schedule": name, "count": recorded + more})
        if within:
            *earlier, latest = within
            if earlier:
                notes = [
                    (f.at, COALESCED, f"caught up in the run of {latest.at.isoformat()}")
                    for f in earlier
                ]
                recorded = await self.store.record_fires(entry.row.id, notes, now=stamp)
                self.role.metrics.fires.labels(name, COALESCED).inc(recorded)
            await self.fire(entry, latest, "catch_up")


# --- runs ---------------------------------------------------------------------------------


@dataclass
class Running:
    run: RunRow
    spec: ScheduleSettings
    task: asyncio.Task[None]
    ending: bool = False  # its end is being written: its lease is no longer renewed
    cancelled: str | None = None  # an operator cancelled it: who and why


class RunKeeper:
    """The runs this process holds, and the queued and abandoned ones of all."""

    def __init__(self, role: Scheduler) -> None:
        self.role = role
        self.running: dict[int, Running] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()
        # runs' ends are written together: one transaction for the ends of a moment
        self.ending: list[tuple[RunEnd, asyncio.Future[bool | None]]] = []
        self.writer: asyncio.Task[None] | None = None
        role.keeper = self

    @property
    def store(self) -> Any:
        return self.role.ctx.store

    @property
    def lease(self) -> float:
        return self.role.role_settings.run_lease

    def start(self) -> list[asyncio.Task[None]]:
        self.tasks = [
            asyncio.create_task(self._renew_loop(), name="runs.renew"),
            asyncio.create_task(self._queue_loop(), name="runs.queued"),
            asyncio.create_task(self._expiry_loop(), name="runs.expiry"),
            asyncio.create_task(self._cancel_loop(), name="runs.cancels"),
        ]
        return self.tasks

    def problems(self) -> list[str]:
        return [f"{t.get_name()} stopped" for t in self.tasks if t.done()]

    async def drain(self, timeout: float) -> None:
        """Let the runs under way finish within ``timeout``; stop the rest and mark
        them interrupted (retried by their policy)."""
        self.stopping.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        jobs = [r.task for r in self.running.values()]
        if jobs:
            log.info("waiting for runs under way", extra={"runs": len(jobs), "deadline": timeout})
            await asyncio.wait(jobs, timeout=timeout)
        for entry in list(self.running.values()):
            entry.task.cancel()
        await asyncio.gather(*(r.task for r in self.running.values()), return_exceptions=True)
        if self.writer is not None:  # the ends still being written
            await asyncio.gather(self.writer, return_exceptions=True)
        if self.role.keeper is self:
            self.role.keeper = None

    def launch(self, run: RunRow, spec: ScheduleSettings) -> None:
        if self.stopping.is_set():
            return
        task = asyncio.create_task(self._execute(run, spec), name=f"run.{run.schedule}.{run.id}")
        self.running[run.id] = Running(run, spec, task)

    async def _execute(self, run: RunRow, spec: ScheduleSettings) -> None:
        role = self.role
        kind = JOB_KINDS[spec.job]
        settings = role.ctx.settings
        started = role.clock.monotonic()
        status, error, output = "failed", None, None
        context = JobContext(
            run.schedule, run.id, run.fire_time, run.attempt, zone_of(spec, settings),
            settings.timezone, settings.sources, role.ctx.store, self._notify_for(run.schedule),
            count_token=role.count_token,
        )  # fmt: skip
        try:
            if spec.jitter > 0:
                await asyncio.sleep(random.random() * spec.jitter)
            output = await asyncio.wait_for(kind.run(context, spec.options), spec.timeout)
            status = SUCCEEDED
        except JobFailed as exc:
            error, output = str(exc), exc.output
        except TimeoutError:
            error = f"took longer than its timeout ({spec.timeout:g}s)"
        except asyncio.CancelledError:
            held = self.running.get(run.id)
            if held is not None and held.cancelled is not None:
                status, error = CANCELLED_RUN, held.cancelled
            else:
                status = INTERRUPTED
                error = "stopped before it finished (the scheduler was stopping)"
        except Exception as exc:
            log.exception("job raised", extra={"schedule": run.schedule, "job": spec.job})
            error = f"{type(exc).__name__}: {exc}"
        finally:
            elapsed = role.clock.monotonic() - started
        if output is None and context.progress:  # what it had done when it stopped
            output = dict(context.progress)
        role.metrics.duration.labels(spec.job).observe(elapsed)
        role.metrics.runs.labels(run.schedule, status).inc()
        if status == SUCCEEDED:
            role.metrics.last_success.labels(run.schedule).set(role.clock.now().timestamp())
        retry = None
        if status not in (SUCCEEDED, CANCELLED_RUN):
            due = retry_at(spec, run.attempt, role.clock.now())
            retry = (
                Retry(due, f"retry {run.attempt + 1} of {spec.retry.max_attempts}") if due else None
            )
        level = logging.INFO if status == SUCCEEDED else logging.WARNING
        log.log(
            level,
            "run %s",
            status,
            extra={
                "schedule": run.schedule, "run": run.id, "attempt": run.attempt,
                "seconds": round(elapsed, 3), "error": error, "retry": retry is not None,
            },
        )  # fmt: skip
        await self._finish(run, status, error, output, retry)
        self.running.pop(run.id, None)

    async def _finish(
        self, run: RunRow, status: str, error: str | None, output: Any, retry: Retry | None
    ) -> None:
        held = self.running.get(run.id)
        if held is not None:
            held.ending = True
        done: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self.ending.append((RunEnd(run.id, status, error, output, retry), done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write_ends(), name="runs.ends")
        if await asyncio.shield(done) is False:
            log.warning("run no longer held: its lease ran out", extra={"run": run.id})

    async def _write_ends(self) -> None:
        """Write the ends queued, batch by batch; the outcome is worth a few tries,
        the lease decides after that (None: not written)."""
        while self.ending:
            batch, self.ending = self.ending, []
            written: list[bool] | None = None
            for _ in range(10):
                try:
                    written = await self.store.finish_runs(
                        [e for e, _ in batch], self.role.ctx.owner, now=self.role.clock.for_store()
                    )
                    break
                except StoreUnavailable:
                    await asyncio.sleep(STORE_RETRY)
                except Exception:  # a bug: the runs' leases run out, they are retried
                    log.exception("run ends not written")
                    break
            for i, (_, done) in enumerate(batch):
                if not done.done():
                    done.set_result(written[i] if written is not None else None)

    def _notify_for(self, schedule: str) -> Any:
        async def notify(targets: list[str], subject: str, text: str) -> list[str]:
            return await self.role.notify(
                targets, subject, text, f"report:{schedule}", schedule, "report"
            )

        return notify

    # --- the loops --------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            ids = list(self.running)
            if not ids:
                continue
            try:
                renewed = set(
                    await self.store.renew_runs(
                        self.role.ctx.owner, ids, self.lease, now=self.role.clock.for_store()
                    )
                )
            except StoreUnavailable:
                continue
            for run_id in set(ids) - renewed:
                held = self.running.get(run_id)
                if held is not None and not held.ending:  # not one that has just ended
                    log.warning("run lease lost", extra={"run": run_id})

    async def _cancel_loop(self) -> None:
        """Stop the runs held here that an operator asked to cancel."""
        while True:
            await asyncio.sleep(CANCEL_POLL)
            ids = [i for i, held in self.running.items() if not held.ending and not held.cancelled]
            if not ids:
                continue
            try:
                asked = await self.store.cancel_requests(self.role.ctx.owner, ids)
            except StoreUnavailable:
                continue
            for run in asked:
                held = self.running.get(run.id)
                if held is None or held.ending or held.cancelled is not None:
                    continue
                held.cancelled = run.cancel_text
                log.warning("run cancelled: %s", run.cancel_text,
                            extra={"schedule": held.run.schedule, "run": run.id})  # fmt: skip
                held.task.cancel()

    async def _queue_loop(self) -> None:
        while True:
            await asyncio.sleep(QUEUE_POLL)
            known = {e.row.id: e for e in self.role.known.values() if e.active}
            if not known:
                continue
            allow = [i for i, e in known.items() if e.spec.overlap == "allow"]
            bounds = {
                i: e.spec.max_concurrent
                for i, e in known.items()
                if e.spec.max_concurrent is not None
            }
            try:
                started = await self.store.start_queued(
                    self.role.ctx.owner, self.lease, allow, list(known),
                    now=self.role.clock.for_store(), max_concurrent=bounds,
                )  # fmt: skip
            except StoreUnavailable:
                continue
            for run in started:
                entry = known.get(run.schedule_id)
                if entry is not None:
                    self.role.metrics.fires.labels(run.schedule, "started").inc()
                    self.launch(run, entry.spec)

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.lease / 3))
            try:
                expired = await self.store.expired_runs(now=self.role.clock.for_store())
            except StoreUnavailable:
                continue
            for run in expired:
                if run.id in self.running:
                    continue  # ours, renewing late: not abandoned
                entry = self.role.known.get(run.schedule)
                due = retry_at(entry.spec, run.attempt, self.role.clock.now()) if entry else None
                retry = (
                    Retry(due, f"retry {run.attempt + 1} after an interruption") if due else None
                )
                note = f"its scheduler ({run.lease_owner}) stopped renewing its lease"
                with contextlib.suppress(StoreUnavailable):
                    stamp = self.role.clock.for_store()
                    if await self.store.interrupt_run(
                        run.id, run.lease_expires_at, note, retry, now=stamp
                    ):
                        log.warning(
                            "run interrupted",
                            extra={
                                "schedule": run.schedule,
                                "run": run.id,
                                "retry": retry is not None,
                            },
                        )
                        self.role.metrics.runs.labels(run.schedule, "interrupted").inc()
