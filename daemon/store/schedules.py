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
from daemon.domain.schedules import (
    Claim,
    Overlap,
    Retry,
    RunEnd,
    RunRow,
    ScheduleError,
    ScheduleRow,
)
from daemon.domain.statuses import FINISHED_RUNS, INTERRUPTED, QUEUED, RUNNING, SKIPPED
from daemon.store import models
from daemon.store.audit import Audit
from daemon.store.models import JobRun, Schedule, db_timestamp, read_timestamp, tuples
from daemon.store.sql.base import chunked
from daemon.store.unit import Unit

FILE_SCHEDULES_LOCK = 0x6F7574626F7864  # PostgreSQL advisory lock of sync_file_schedules


def _overlap_status(under_way: set[str], overlap: Overlap) -> str:
    """A new run's status, given what its schedule has under way."""
    if overlap == "allow" or not under_way & {RUNNING, QUEUED}:
        return RUNNING
    if RUNNING not in under_way:
        return QUEUED  # a run (a retry, a run now) waits already: this one waits behind it
    if overlap == "queue_one" and QUEUED not in under_way:
        return QUEUED
    return SKIPPED


def _schedule(row: Schedule) -> ScheduleRow:
    return ScheduleRow(
        row.id, row.name, row.definition, row.origin, row.revision, row.paused, row.pause_note,
        row.paused_by, row.paused_at, row.removed_at, row.created_at, row.updated_at,
    )  # fmt: skip


def _run(row: JobRun, name: str) -> RunRow:
    return RunRow(
        row.id, row.schedule_id, name, row.fire_time, row.attempt, row.trigger, row.status,
        row.retry_of, row.due_at, row.started_at, row.finished_at, row.lease_owner,
        row.lease_expires_at, row.error, row.output, row.note,
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
        self, name: str, paused: bool, note: str | None, actor: str, now: datetime | None = None
    ) -> ScheduleRow:
        """Pause (with a note: who, why) or resume a schedule. Its fires while
        paused are not run and not recorded."""
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
            self.audit.entry(actor, action, f"schedule {name}", details, 1, when)
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
        running (``queue_one``: one at most, the rest skipped) or ``skipped``.
        Answers a run or None per claim, in order."""

        def work() -> list[RunRow | None]:
            when = self.unit.now(now)
            busy = self._busy([c.schedule_id for c in claims if c.overlap != "allow"], when)
            runs: list[RunRow] = []
            for c in claims:
                status = _overlap_status(busy.setdefault(c.schedule_id, set()), c.overlap)
                busy[c.schedule_id].add(status)
                running = status == RUNNING
                runs.append(RunRow(
                    0, c.schedule_id, "", as_utc(c.fire_time), 1, c.trigger, status, None, when,
                    started_at=when if running else None,
                    finished_at=when if status == SKIPPED else None,
                    lease_owner=owner if running else None,
                    lease_expires_at=when + timedelta(seconds=lease) if running else None,
                    error=None, output=None,
                    note=c.note if status != SKIPPED
                    else _joined(c.note, "the last run was still running"),
                ))  # fmt: skip
            stamp = db_timestamp(when)
            inserted: dict[tuple[int, datetime], int] = {}
            for chunk in chunked(runs, 500):
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
            names = self._schedule_names({key[0] for key in inserted})
            out: list[RunRow | None] = []
            for r in runs:
                id_ = inserted.get((r.schedule_id, r.fire_time))
                out.append(
                    None if id_ is None
                    else dataclasses.replace(r, id=id_, schedule=names[r.schedule_id])
                )  # fmt: skip
            return out

        return self.unit.write(work)

    def _schedule_names(self, ids: Collection[int]) -> dict[int, str]:
        Schedule = self.m.Schedule
        names: dict[int, str] = {}
        for chunk in chunked(sorted(ids)):
            query = Schedule.select(Schedule.id, Schedule.name).where(Schedule.id.in_(list(chunk)))
            names.update((i, name) for i, name in tuples(query))
        return names

    def _busy(self, schedule_ids: Sequence[int], now: datetime) -> dict[int, set[str]]:
        """What each schedule has under way: a run ``running`` (under a live lease)
        or ``queued``."""
        JobRun = self.m.JobRun
        busy: dict[int, set[str]] = {}
        for chunk in chunked(sorted(set(schedule_ids))):
            query = (
                JobRun.select(JobRun.schedule_id, JobRun.status)
                .where(
                    JobRun.schedule_id.in_(list(chunk))
                    & (
                        ((JobRun.status == RUNNING) & (JobRun.lease_expires_at > now))
                        | (JobRun.status == QUEUED)
                    )
                )
                .distinct()
            )
            for schedule_id, status in tuples(query):
                busy.setdefault(schedule_id, set()).add(status)
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
    ) -> list[int]:
        """Queue runs asked for (``manual``: run now; ``backfill``: one per fire
        of a range); a fire already in the ledger is not run again. Answers the
        ids of the runs queued."""

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
                    actor, f"schedule.{trigger}", f"schedule {name}", details, len(queued), when
                )
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
    ) -> list[RunRow]:
        """Start queued runs that are due, oldest first, of these schedules: a run
        of a schedule with a run still running waits, unless the schedule allows
        overlap. Answers the runs now running under a lease to ``owner``."""
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
                if row.schedule_id in busy and row.schedule_id not in allow_overlap:
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
                    busy.add(row.schedule_id)
                    started.append(_run(JobRun.get_by_id(row.id), self._name(row.schedule_id)))
            return started

        return self.unit.write(work)

    def _running_schedules(self, now: datetime) -> set[int]:
        JobRun = self.m.JobRun
        query = (
            JobRun.select(JobRun.schedule_id)
            .where((JobRun.status == RUNNING) & (JobRun.lease_expires_at > now))
            .distinct()
        )
        return {schedule_id for (schedule_id,) in tuples(query)}

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
        ``interrupted``) and queue their retries, in one transaction. Per run, in
        order: False when it is no longer held (its lease ran out and it was taken)."""
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
                JobRun.update(
                    status=end.status, finished_at=when, error=end.error, output=end.output,
                    lease_owner=None, lease_expires_at=None,
                ).where(JobRun.id == end.run_id).execute()  # fmt: skip
                if end.retry is not None:
                    self._queue_retry(row, end.retry, when)
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
        retry. False when someone got there first."""
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
            JobRun.update(
                status=INTERRUPTED, finished_at=when, error=note, lease_owner=None,
                lease_expires_at=None,
            ).where(JobRun.id == run_id).execute()  # fmt: skip
            if retry is not None:
                self._queue_retry(row, retry, when)
            return True

        return self.unit.write(work)

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
