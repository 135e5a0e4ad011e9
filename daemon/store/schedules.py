"""Schedules and the fire ledger.

A fire is claimed by inserting its run, unique on (schedule, fire time,
attempt): however many schedulers try, one inserts it, the others find it there
and do nothing. Every fire that fell due gets a row, whatever became of it
(``daemon.store.models``: run statuses). A running run holds a lease its
scheduler renews; one whose lease ran out is interrupted by whoever sees it,
and retried when the scheduler says so. The scheduler decides (it holds the
schedules' policies); these operations write what they are told.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from daemon.domain.clock import as_utc
from daemon.domain.limits import storable
from daemon.domain.schedules import (
    Claim,
    Overlap,
    Retry,
    RunEnd,
    RunRow,
    ScheduleError,
    ScheduleRow,
)
from daemon.domain.statuses import (
    CANCELLED_RUN,
    ENDED,
    FINISHED_RUNS,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
)
from daemon.store import models
from daemon.store.audit import Audit
from daemon.store.models import JobRun, Schedule, db_timestamp, read_timestamp, tuples
from daemon.store.sql.base import chunked
from daemon.store.unit import Unit

FILE_SCHEDULES_LOCK = 0x6F7574626F7864  # PostgreSQL advisory lock of sync_file_schedules


def _overlap_status(
    under_way: Mapping[str, int], overlap: Overlap, max_concurrent: int | None = None
) -> str:
    """A new run's status, given how many runs its schedule has under way (by
    status): ``allow`` runs it beside them, up to ``max_concurrent`` running."""
    running, queued = under_way.get(RUNNING, 0), under_way.get(QUEUED, 0)
    if overlap == "allow":
        return RUNNING if max_concurrent is None or running < max_concurrent else SKIPPED
    if not running and not queued:
        return RUNNING
    if not running:
        return QUEUED  # a run (a retry, a run now) waits already: this one waits behind it
    if overlap == "queue_one" and not queued:
        return QUEUED
    return SKIPPED


def _skip_note(claim: Claim, under_way: Mapping[str, int]) -> str | None:
    if claim.overlap == "allow":
        running = under_way.get(RUNNING, 0)
        why = f"{running} runs still running (max_concurrent {claim.max_concurrent})"
    else:
        why = "the last run was still running"
    return _joined(claim.note, why)


def _runs_made(row: Schedule, definition: Mapping[str, Any], again: bool) -> int:
    """A schedule's count of runs made once its definition changes: kept while it
    has a ``max_runs``, forgotten without one or when it is added again."""
    return 0 if again or definition.get("max_runs") is None else row.runs_made


def _reads_state(claim: Claim) -> bool:
    """Whether a claim's outcome depends on the schedule's runs under way."""
    return claim.overlap != "allow" or claim.max_concurrent is not None


def _bounded(claim: Claim) -> bool:
    """Whether a claim's outcome depends on a count another claim may be moving at
    the same moment (the runs at once, the runs made): its schedule's row is locked."""
    return claim.max_concurrent is not None or claim.max_runs is not None


def _schedule(row: Schedule) -> ScheduleRow:
    return ScheduleRow(
        row.id, row.name, row.definition, row.origin, row.revision, row.paused, row.pause_note,
        row.paused_by, row.paused_at, row.removed_at, row.created_at, row.updated_at,
        row.runs_made,
    )  # fmt: skip


def _run(row: JobRun, name: str) -> RunRow:
    return RunRow(
        row.id, row.schedule_id, name, row.fire_time, row.attempt, row.trigger, row.status,
        row.retry_of, row.due_at, row.started_at, row.finished_at, row.lease_owner,
        row.lease_expires_at, row.error, row.output, row.note, row.cancel_requested_at,
        row.cancel_requested_by, row.cancel_note,
    )  # fmt: skip


class Schedules:
    def __init__(self, unit: Unit, audit: Audit) -> None:
        self.unit = unit
        self.sql = unit.sql
        self.m = unit.models
        self.audit = audit

    # --- schedules --------------------------------------------------------------------

    def schedules(self, include_removed: bool = False) -> list[ScheduleRow]:
        Schedule = self.m.Schedule

        def work() -> list[ScheduleRow]:
            query = Schedule.select().order_by(Schedule.name)
            if not include_removed:
                query = query.where(Schedule.removed_at.is_null())
            return [_schedule(row) for row in query]

        return self.unit.read(work)

    def schedule(self, name: str) -> ScheduleRow | None:
        Schedule = self.m.Schedule

        def work() -> ScheduleRow | None:
            row = Schedule.get_or_none(Schedule.name == name)
            return None if row is None else _schedule(row)

        return self.unit.read(work)

    def sync_file_schedules(
        self, definitions: Mapping[str, dict[str, Any]], now: datetime | None = None
    ) -> dict[str, str]:
        """Make the file's schedules what ``definitions`` says: added, changed
        (a new revision), unchanged, or removed (a file schedule no longer in the
        file: marked removed, its ledger kept). A name an operator defined is
        left alone and answered ``operator``. Answers name → what happened."""
        Schedule = self.m.Schedule

        def work() -> dict[str, str]:
            # one at a time: schedulers starting at once would both insert a new
            # schedule (a unique violation)
            self.sql.exclusive(FILE_SCHEDULES_LOCK)
            when = self.unit.now(now)
            rows = {row.name: row for row in Schedule.select()}
            done: dict[str, str] = {}
            for name, definition in definitions.items():
                row = rows.get(name)
                if row is None:
                    Schedule.insert(
                        name=name, definition=definition, origin="file", revision=1,
                        paused=False, created_at=when, updated_at=when,
                    ).execute()  # fmt: skip
                    done[name] = "added"
                elif row.origin != "file" and row.removed_at is None:
                    done[name] = "operator"
                elif row.definition != definition or row.removed_at is not None:
                    Schedule.update(
                        definition=definition, origin="file", revision=row.revision + 1,
                        removed_at=None, updated_at=when,
                        runs_made=_runs_made(row, definition, again=row.removed_at is not None),
                    ).where(Schedule.id == row.id).execute()  # fmt: skip
                    done[name] = "changed"
            for name, row in rows.items():
                if row.origin == "file" and row.removed_at is None and name not in definitions:
                    Schedule.update(
                        removed_at=when, revision=row.revision + 1, updated_at=when
                    ).where(Schedule.id == row.id).execute()
                    done[name] = "removed"
            return done

        return self.unit.write(work)

    def put_schedule(
        self,
        name: str,
        definition: dict[str, Any],
        actor: str,
        create: bool,
        now: datetime | None = None,
    ) -> ScheduleRow:
        """Add (``create``) or change an operator's schedule. One the YAML file
        defines is changed there, not here."""
        Schedule = self.m.Schedule

        def work() -> ScheduleRow:
            when = self.unit.now(now)
            row = Schedule.get_or_none(Schedule.name == name)
            live = row is not None and row.removed_at is None
            if create and live:
                raise ScheduleError(f"a schedule named {name!r} exists (edit it instead)")
            if not create and not live:
                raise ScheduleError(f"no schedule named {name!r}", "missing")
            if live and row is not None and row.origin == "file":
                raise ScheduleError(
                    f"schedule {name!r} is defined in the YAML file: change it there"
                )
            if row is None:
                Schedule.insert(
                    name=name, definition=definition, origin="operator", revision=1,
                    paused=False, created_at=when, updated_at=when,
                ).execute()  # fmt: skip
            else:
                Schedule.update(
                    definition=definition, origin="operator", revision=row.revision + 1,
                    removed_at=None, updated_at=when,
                    runs_made=_runs_made(row, definition, again=not live),
                ).where(Schedule.id == row.id).execute()  # fmt: skip
            action = "schedule.add" if create else "schedule.edit"
            self.audit.entry(actor, action, f"schedule {name}", {"definition": definition}, 1, when)
            return _schedule(Schedule.get(Schedule.name == name))

        return self.unit.write(work)

    def remove_schedule(self, name: str, actor: str, now: datetime | None = None) -> ScheduleRow:
        """Remove an operator's schedule; its ledger is kept."""
        Schedule = self.m.Schedule

        def work() -> ScheduleRow:
            when = self.unit.now(now)
            row = self._live(name)
            if row.origin == "file":
                raise ScheduleError(
                    f"schedule {name!r} is defined in the YAML file: remove it there"
                )
            Schedule.update(removed_at=when, revision=row.revision + 1, updated_at=when).where(
                Schedule.id == row.id
            ).execute()
            self.audit.entry(actor, "schedule.remove", f"schedule {name}", None, 1, when)
            return _schedule(Schedule.get_by_id(row.id))

        return self.unit.write(work)

    def pause_schedule(
        self,
        name: str,
        paused: bool,
        note: str | None,
        actor: str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> ScheduleRow:
        """Pause (with a note: who, why) or resume a schedule. Its fires while
        paused are not run and not recorded. ``reason``: the operator's, in the audit."""
        Schedule = self.m.Schedule

        def work() -> ScheduleRow:
            when = self.unit.now(now)
            row = self._live(name)
            changes: dict[Any, Any] = {Schedule.paused: paused, Schedule.updated_at: when}
            changes.update(
                {Schedule.pause_note: note, Schedule.paused_by: actor, Schedule.paused_at: when}
                if paused
                else {Schedule.pause_note: None, Schedule.paused_by: None, Schedule.paused_at: None}
            )
            changes[Schedule.revision] = row.revision + 1
            Schedule.update(changes).where(Schedule.id == row.id).execute()
            action = "schedule.pause" if paused else "schedule.resume"
            details = {"note": note} if note else None
            self.audit.entry(actor, action, f"schedule {name}", details, 1, when, reason)
            return _schedule(Schedule.get_by_id(row.id))

        return self.unit.write(work)

    def _live(self, name: str) -> Schedule:
        Schedule = self.m.Schedule
        row = Schedule.get_or_none((Schedule.name == name) & Schedule.removed_at.is_null())
        if row is None:
            raise ScheduleError(f"no schedule named {name!r}", "missing")
        return row

    # --- fires ------------------------------------------------------------------------

    def last_fires(self, schedule_ids: Collection[int]) -> dict[int, datetime]:
        """The latest fire time in each schedule's ledger (first attempts)."""
        JobRun = self.m.JobRun

        def work() -> dict[int, datetime]:
            found: dict[int, datetime] = {}
            for chunk in chunked(sorted(schedule_ids)):
                query = (
                    JobRun.select(JobRun.schedule_id, pw.fn.MAX(JobRun.fire_time))
                    .where(JobRun.schedule_id.in_(list(chunk)) & (JobRun.attempt == 1))
                    .group_by(JobRun.schedule_id)
                )
                for schedule_id, latest in tuples(query):
                    if latest is not None:
                        found[schedule_id] = read_timestamp(latest)
            return found

        return self.unit.read(work)

    def claim_fire(
        self,
        schedule_id: int,
        fire_time: datetime,
        trigger: str,
        owner: str,
        lease: float,
        overlap: Overlap,
        note: str | None = None,
        now: datetime | None = None,
    ) -> RunRow | None:
        """Claim one fire (``claim_fires``)."""
        claim = Claim(schedule_id, fire_time, trigger, overlap, note)
        return self.claim_fires([claim], owner, lease, now)[0]

    def claim_fires(
        self,
        claims: Sequence[Claim],
        owner: str,
        lease: float,
        now: datetime | None = None,
    ) -> list[RunRow | None]:
        """Claim fires, in one transaction: each one's run is inserted (None when it
        is there already: another scheduler has it) and, by its overlap policy,
        ``running`` under a lease to ``owner``, ``queued`` behind the run still
        running (``queue_one``: one at most, the rest skipped) or ``skipped``
        (``allow`` with ``max_concurrent`` runs running too). A fire of a schedule
        that has made its ``max_runs`` runs is not recorded: its answer is a run
        of status ``ended`` (id 0). Answers a run or None per claim, in order."""

        def work() -> list[RunRow | None]:
            when = self.unit.now(now)
            # the claims of a bounded schedule count its runs one after the other
            made = self._lock_schedules([c.schedule_id for c in claims if _bounded(c)])
            busy = self._busy([c.schedule_id for c in claims if _reads_state(c)], when)
            runs: list[RunRow] = []
            ended: set[int] = set()  # indexes of claims past max_runs
            for i, c in enumerate(claims):
                under_way = busy.setdefault(c.schedule_id, {})
                status = _overlap_status(under_way, c.overlap, c.max_concurrent)
                if status != SKIPPED and c.max_runs is not None:
                    if made.get(c.schedule_id, 0) >= c.max_runs:
                        ended.add(i)
                        status = SKIPPED  # not inserted: see below
                    else:
                        made[c.schedule_id] = made.get(c.schedule_id, 0) + 1
                if i not in ended:
                    under_way[status] = under_way.get(status, 0) + 1
                running = status == RUNNING
                runs.append(RunRow(
                    0, c.schedule_id, "", as_utc(c.fire_time), 1, c.trigger, status, None, when,
                    started_at=when if running else None,
                    finished_at=when if status == SKIPPED else None,
                    lease_owner=owner if running else None,
                    lease_expires_at=when + timedelta(seconds=lease) if running else None,
                    error=None, output=None,
                    note=c.note if status != SKIPPED else _skip_note(c, under_way),
                ))  # fmt: skip
            stamp = db_timestamp(when)
            inserted: dict[tuple[int, datetime], int] = {}
            for chunk in chunked([r for i, r in enumerate(runs) if i not in ended], 500):
                params: list[Any] = []
                for r in chunk:
                    params += [
                        r.schedule_id, db_timestamp(r.fire_time), r.attempt, r.trigger, r.status,
                        stamp, r.started_at and stamp, r.finished_at and stamp, r.lease_owner,
                        r.lease_expires_at and db_timestamp(r.lease_expires_at), r.note, stamp,
                    ]  # fmt: skip
                for id_, schedule_id, fire_time, _ in self.sql.rows(
                    self.sql.insert_runs(len(chunk)), params
                ):
                    inserted[(schedule_id, read_timestamp(fire_time))] = id_
            named = {key[0] for key in inserted} | {runs[i].schedule_id for i in ended}
            names = self._schedule_names(named)
            out: list[RunRow | None] = []
            counts: dict[int, int] = {}  # runs made, per schedule, by this claim
            for i, r in enumerate(runs):
                if i in ended:
                    out.append(dataclasses.replace(
                        r, status=ENDED, schedule=names[r.schedule_id], started_at=None,
                        finished_at=None, lease_owner=None, lease_expires_at=None,
                        note=f"the schedule has made its {claims[i].max_runs} runs (max_runs)",
                    ))  # fmt: skip
                    continue
                id_ = inserted.get((r.schedule_id, r.fire_time))
                if id_ is not None and r.status != SKIPPED and claims[i].max_runs is not None:
                    counts[r.schedule_id] = counts.get(r.schedule_id, 0) + 1
                out.append(
                    None if id_ is None
                    else dataclasses.replace(r, id=id_, schedule=names[r.schedule_id])
                )  # fmt: skip
            Schedule = self.m.Schedule
            for schedule_id, count in counts.items():
                Schedule.update(runs_made=Schedule.runs_made + count).where(
                    Schedule.id == schedule_id
                ).execute()
            return out

        return self.unit.write(work)

    def _schedule_names(self, ids: Collection[int]) -> dict[int, str]:
        Schedule = self.m.Schedule
        names: dict[int, str] = {}
        for chunk in chunked(sorted(ids)):
            query = Schedule.select(Schedule.id, Schedule.name).where(Schedule.id.in_(list(chunk)))
            names.update((i, name) for i, name in tuples(query))
        return names

    def _lock_schedules(self, schedule_ids: Sequence[int]) -> dict[int, int]:
        """The schedules' rows locked until the commit (in the order of their ids),
        so that two claims of one schedule's fires count its runs one after the
        other; answers the runs each has made."""
        Schedule = self.m.Schedule
        made: dict[int, int] = {}
        for chunk in chunked(sorted(set(schedule_ids))):
            query = (
                Schedule.select(Schedule.id, Schedule.runs_made)
                .where(Schedule.id.in_(list(chunk)))
                .order_by(Schedule.id)
            )
            made.update(tuples(self.sql.for_update(query)))
        return made

    def _busy(self, schedule_ids: Sequence[int], now: datetime) -> dict[int, dict[str, int]]:
        """What each schedule has under way: how many runs ``running`` (under a
        live lease) and ``queued``."""
        JobRun = self.m.JobRun
        busy: dict[int, dict[str, int]] = {}
        for chunk in chunked(sorted(set(schedule_ids))):
            query = (
                JobRun.select(JobRun.schedule_id, JobRun.status, pw.fn.COUNT(JobRun.id))
                .where(
                    JobRun.schedule_id.in_(list(chunk))
                    & (
                        ((JobRun.status == RUNNING) & (JobRun.lease_expires_at > now))
                        | (JobRun.status == QUEUED)
                    )
                )
                .group_by(JobRun.schedule_id, JobRun.status)
            )
            for schedule_id, status, count in tuples(query):
                busy.setdefault(schedule_id, {})[status] = count
        return busy

    def _insert_run(self, **fields: Any) -> int | None:
        """Insert a run unless its (schedule, fire time, attempt) is there: its id, or None."""
        JobRun = self.m.JobRun
        query = JobRun.insert(**fields).on_conflict_ignore().returning(JobRun.id)
        rows = tuples(query)
        return int(rows[0][0]) if rows else None

    def record_fires(
        self,
        schedule_id: int,
        fires: Iterable[tuple[datetime, str, str | None]],
        trigger: str = "cron",
        now: datetime | None = None,
    ) -> int:
        """Record fires that are not run (``missed``, ``coalesced``): (fire time,
        status, note) each; one already in the ledger is left as it is. Answers
        how many were recorded."""
        JobRun = self.m.JobRun

        def work() -> int:
            when = self.unit.now(now)
            rows = [
                {
                    "schedule": schedule_id, "fire_time": at, "attempt": 1, "trigger": trigger,
                    "status": status, "due_at": when, "finished_at": when, "note": note,
                    "created_at": when,
                }
                for at, status, note in fires
            ]  # fmt: skip
            count = 0
            for chunk in chunked(rows, 200):
                query = JobRun.insert_many(chunk).on_conflict_ignore().returning(JobRun.id)
                count += len(tuples(query))
            return count

        return self.unit.write(work)

    def queue_runs(
        self,
        schedule_id: int,
        fire_times: Sequence[datetime],
        trigger: str,
        note: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> list[int]:
        """Queue runs asked for (``manual``: run now; ``backfill``: one per fire
        of a range); a fire already in the ledger is not run again. Answers the
        ids of the runs queued (``actor``: in the audit, with its ``reason``)."""

        def work() -> list[int]:
            when = self.unit.now(now)
            queued: list[int] = []
            for at in fire_times:
                run_id = self._insert_run(
                    schedule=schedule_id, fire_time=at, attempt=1, trigger=trigger,
                    status=QUEUED, due_at=when, note=note, created_at=when,
                )  # fmt: skip
                if run_id is not None:
                    queued.append(run_id)
            if actor is not None:
                details = {"fires": len(fire_times), "runs": queued[:100]}
                if fire_times:
                    details |= {
                        "from": fire_times[0].isoformat(),
                        "until": fire_times[-1].isoformat(),
                    }
                name = self._name(schedule_id)
                self.audit.entry(
                    actor, f"schedule.{trigger}", f"schedule {name}", details, len(queued), when,
                    reason,
                )  # fmt: skip
            return queued

        return self.unit.write(work)

    def start_queued(
        self,
        owner: str,
        lease: float,
        allow_overlap: Collection[int],
        schedule_ids: Collection[int],
        limit: int = 10,
        now: datetime | None = None,
        max_concurrent: Mapping[int, int] | None = None,
    ) -> list[RunRow]:
        """Start queued runs that are due, oldest first, of these schedules: a run
        of a schedule with a run still running waits, unless the schedule allows
        overlap (and has fewer than its ``max_concurrent`` running, when it has
        a bound). Answers the runs now running under a lease to ``owner``."""
        bounds = max_concurrent or {}
        JobRun = self.m.JobRun

        def work() -> list[RunRow]:
            when = self.unit.now(now)
            due = (
                JobRun.select()
                .where(
                    (JobRun.status == QUEUED)
                    & (JobRun.due_at <= when)
                    & JobRun.schedule_id.in_(list(schedule_ids))
                )
                .order_by(JobRun.due_at, JobRun.id)
                .limit(limit * 4)
            )
            due = self.sql.skip_locked(due)
            started: list[RunRow] = []
            busy = self._running_schedules(when)
            for row in due:
                if len(started) >= limit:
                    break
                running = busy.get(row.schedule_id, 0)
                if running and row.schedule_id not in allow_overlap:
                    continue
                if running and running >= bounds.get(row.schedule_id, running + 1):
                    continue
                updated = (
                    JobRun.update(
                        status=RUNNING, started_at=when, lease_owner=owner,
                        lease_expires_at=when + timedelta(seconds=lease),
                    )
                    .where((JobRun.id == row.id) & (JobRun.status == QUEUED))
                    .execute()
                )  # fmt: skip
                if updated:
                    busy[row.schedule_id] = running + 1
                    started.append(_run(JobRun.get_by_id(row.id), self._name(row.schedule_id)))
            return started

        return self.unit.write(work)

    def _running_schedules(self, now: datetime) -> dict[int, int]:
        """The runs running (under a live lease), per schedule."""
        JobRun = self.m.JobRun
        query = (
            JobRun.select(JobRun.schedule_id, pw.fn.COUNT(JobRun.id))
            .where((JobRun.status == RUNNING) & (JobRun.lease_expires_at > now))
            .group_by(JobRun.schedule_id)
        )
        return {schedule_id: count for schedule_id, count in tuples(query)}

    # --- runs -------------------------------------------------------------------------

    def renew_runs(
        self, owner: str, run_ids: Sequence[int], lease: float, now: datetime | None = None
    ) -> list[int]:
        """Extend the leases of runs ``owner`` still holds; answers those renewed."""
        JobRun = self.m.JobRun

        def work() -> list[int]:
            when = self.unit.now(now)
            renewed: list[int] = []
            for chunk in chunked(list(run_ids)):
                query = (
                    JobRun.update(lease_expires_at=when + timedelta(seconds=lease))
                    .where(
                        JobRun.id.in_(list(chunk))
                        & (JobRun.status == RUNNING)
                        & (JobRun.lease_owner == owner)
                    )
                    .returning(JobRun.id)
                )
                renewed += [row[0] for row in tuples(query)]
            return sorted(renewed)

        return self.unit.write(work) if run_ids else []

    def finish_run(
        self,
        run_id: int,
        owner: str,
        status: str,
        error: str | None = None,
        output: dict[str, Any] | None = None,
        retry: Retry | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Write how one run ended (``finish_runs``)."""
        return self.finish_runs([RunEnd(run_id, status, error, output, retry)], owner, now)[0]

    def finish_runs(
        self, ends: Sequence[RunEnd], owner: str, now: datetime | None = None
    ) -> list[bool]:
        """Write how runs ``owner`` holds ended (``succeeded``, ``failed``,
        ``interrupted``, ``cancelled``) and queue their retries, in one transaction.
        A run an operator asked to cancel is not retried (and one stopped by its
        scheduler meanwhile is ``cancelled``). Per run, in order: False when it is
        no longer held (its lease ran out and it was taken)."""
        JobRun = self.m.JobRun
        for end in ends:
            if end.status not in FINISHED_RUNS:
                raise ValueError(f"{end.status!r} is not how a run ends")

        def work() -> list[bool]:
            when = self.unit.now(now)
            held: dict[int, models.JobRun] = {}
            for chunk in chunked([e.run_id for e in ends]):
                query = JobRun.select().where(
                    JobRun.id.in_(list(chunk))
                    & (JobRun.status == RUNNING)
                    & (JobRun.lease_owner == owner)
                )
                held.update((row.id, row) for row in query)
            for end in ends:
                row = held.get(end.run_id)
                if row is None:
                    continue
                status, error, retry = end.status, end.error, end.retry
                if row.cancel_requested_at is not None and status != SUCCEEDED:
                    retry = None
                    if status == INTERRUPTED:
                        status, error = CANCELLED_RUN, _run(row, "").cancel_text
                JobRun.update(
                    status=status, finished_at=when, error=storable(error),
                    output=end.output,
                    lease_owner=None, lease_expires_at=None,
                ).where(JobRun.id == end.run_id).execute()  # fmt: skip
                if retry is not None:
                    self._queue_retry(row, retry, when)
            return [e.run_id in held for e in ends]

        return self.unit.write(work)

    def expired_runs(self, now: datetime | None = None, limit: int = 100) -> list[RunRow]:
        """Running runs whose lease ran out: their scheduler died or hung."""
        JobRun = self.m.JobRun

        def work() -> list[RunRow]:
            when = self.unit.now(now)
            query = (
                JobRun.select()
                .where((JobRun.status == RUNNING) & (JobRun.lease_expires_at < when))
                .order_by(JobRun.lease_expires_at)
                .limit(limit)
            )
            return [_run(row, self._name(row.schedule_id)) for row in query]

        return self.unit.read(work)

    def interrupt_run(
        self,
        run_id: int,
        lease_expires_at: datetime | None,
        note: str,
        retry: Retry | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Mark an expired run ``interrupted`` (only if it still holds the lease
        seen when it was found expired: nobody renewed it since) and queue its
        retry; ``cancelled``, not retried, when an operator had asked for that.
        False when someone got there first."""
        JobRun = self.m.JobRun

        def work() -> bool:
            when = self.unit.now(now)
            row = JobRun.get_or_none((JobRun.id == run_id) & (JobRun.status == RUNNING))
            if (
                row is None
                or row.lease_expires_at != lease_expires_at
                or (row.lease_expires_at is not None and row.lease_expires_at >= when)
            ):
                return False
            status, error, again = INTERRUPTED, note, retry
            if row.cancel_requested_at is not None:
                status, error, again = CANCELLED_RUN, f"{_run(row, '').cancel_text}; {note}", None
            JobRun.update(
                status=status, finished_at=when, error=error, lease_owner=None,
                lease_expires_at=None,
            ).where(JobRun.id == run_id).execute()  # fmt: skip
            if again is not None:
                self._queue_retry(row, again, when)
            return True

        return self.unit.write(work)

    def cancel_run(
        self,
        run_id: int,
        actor: str,
        note: str | None = None,
        schedule: str | None = None,
        now: datetime | None = None,
    ) -> tuple[RunRow, bool]:
        """Cancel a run, for an operator: a ``queued`` one is ``cancelled`` at once;
        for a ``running`` one the cancel is asked for (who, when, why), and the
        scheduler holding it stops its job and records it ``cancelled``, not
        retried. In the audit, in the same transaction. Answers the run and
        whether anything changed (a cancel asked for already: no). Refused
        (``ScheduleError``) for a run that has ended, or of another schedule."""
        JobRun = self.m.JobRun

        def work() -> tuple[RunRow, bool]:
            when = self.unit.now(now)
            row = JobRun.get_or_none(JobRun.id == run_id)
            name = self._name(row.schedule_id) if row is not None else None
            if row is None or (schedule is not None and name != schedule):
                of = f" of {schedule}" if schedule is not None else ""
                raise ScheduleError(f"no run {run_id}{of}", "missing", "run")
            assert name is not None
            if row.status not in (QUEUED, RUNNING):
                raise ScheduleError(
                    f"run {run_id} of {name} is {row.status}: only a queued or running run "
                    "can be cancelled",
                    "conflict",
                    "run",
                )
            if row.status == RUNNING and row.cancel_requested_at is not None:
                return _run(row, name), False
            asked = {
                JobRun.cancel_requested_at: when,
                JobRun.cancel_requested_by: actor,
                JobRun.cancel_note: note,
            }
            if row.status == QUEUED:
                shown = dataclasses.replace(
                    _run(row, name), cancel_requested_by=actor, cancel_note=note
                )
                asked |= {
                    JobRun.status: CANCELLED_RUN,
                    JobRun.finished_at: when,
                    JobRun.error: shown.cancel_text,
                }
            guard = (JobRun.id == run_id) & (JobRun.status == row.status)
            JobRun.update(asked).where(guard).execute()
            details = {"status": row.status, "fire_time": row.fire_time.isoformat()}
            if note:
                details["note"] = note
            self.audit.entry(actor, "run.cancel", f"run {run_id} of {name}", details, 1, when)
            return _run(JobRun.get_by_id(run_id), name), True

        return self.unit.write(work)

    def cancel_requests(self, owner: str, run_ids: Sequence[int]) -> list[RunRow]:
        """The runs among these that ``owner`` holds and an operator asked to cancel."""
        JobRun = self.m.JobRun

        def work() -> list[RunRow]:
            found: list[RunRow] = []
            for chunk in chunked(sorted(run_ids)):
                query = JobRun.select().where(
                    JobRun.id.in_(list(chunk))
                    & (JobRun.status == RUNNING)
                    & (JobRun.lease_owner == owner)
                    & JobRun.cancel_requested_at.is_null(False)
                )
                found += [_run(row, "") for row in query]
            return found

        return self.unit.read(work) if run_ids else []

    def _queue_retry(self, row: JobRun, retry: Retry, now: datetime) -> None:
        self._insert_run(
            schedule=row.schedule_id, fire_time=row.fire_time, attempt=row.attempt + 1,
            trigger="retry", status=QUEUED, retry_of=row.retry_of or row.id, due_at=retry.due_at,
            note=retry.note, created_at=now,
        )  # fmt: skip

    def runs(
        self,
        name: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
        statuses: Collection[str] = (),
    ) -> list[RunRow]:
        """The ledger, newest first: of one schedule, or of all."""
        JobRun, Schedule = self.m.JobRun, self.m.Schedule

        def work() -> list[RunRow]:
            query = JobRun.select(JobRun, Schedule.id, Schedule.name).join(Schedule)
            if name is not None:
                query = query.where(Schedule.name == name)
            if before_id is not None:
                query = query.where(JobRun.id < before_id)
            if statuses:
                query = query.where(JobRun.status.in_(list(statuses)))
            query = query.order_by(JobRun.id.desc()).limit(limit)
            return [_run(row, row.schedule.name) for row in query]

        return self.unit.read(work)

    def _name(self, schedule_id: int) -> str:
        Schedule = self.m.Schedule
        row = Schedule.select(Schedule.name).where(Schedule.id == schedule_id).first()
        return row.name if row is not None else "?"

    def purge_runs(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` finished runs that ended before ``before``."""
        JobRun = self.m.JobRun

        def work() -> int:
            stale = (
                JobRun.select(JobRun.id)
                .where(JobRun.status.in_(list(FINISHED_RUNS)) & (JobRun.finished_at < before))
                .order_by(JobRun.finished_at)
                .limit(limit)
            )
            ids = [row.id for row in stale]
            if not ids:
                return 0
            return JobRun.delete().where(JobRun.id.in_(ids)).execute()

        return self.unit.write(work)


def _joined(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


__all__ = ["Retry", "RunRow", "ScheduleError", "ScheduleRow", "Schedules", "db_timestamp"]
