"""What an operator may do to schedules, for the CLI (``outboxd schedules …``)
and the control API alike: each step (add, edit, remove, pause, resume, run now,
backfill, cancel a run, and the readings: the ledger, the notifications sent),
the checks before a change, and how a schedule, a fire, a run and a
notification are shown. A refusal is ``Refused``: ``missing`` when there is no
such schedule, ``conflict`` when it cannot be done to the one there is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from daemon.config.loader import schedule_problems
from daemon.config.schedules import DefinitionError, definition, read_definition, timing_of, zone_of
from daemon.config.settings import ScheduleSettings, Settings
from daemon.domain.alerts import NotificationRow
from daemon.domain.errors import Refused
from daemon.domain.limits import MAX_BACKFILL, NAME, NOTE_MAX, text_problem
from daemon.domain.schedules import RunRow, ScheduleRow
from daemon.domain.statuses import CANCELLED_RUN, RUNNING
from daemon.domain.units import format_duration
from daemon.operator.base import Names, Operator
from daemon.scheduling.fires import Fire, fires_between, next_fires

NOT_LOADED = "in the file, not loaded yet: a scheduler loads it when it starts or on SIGHUP"
FILE_DIFFERS = "the file says otherwise: a scheduler loads it on SIGHUP"
EPSILON = timedelta(microseconds=1)  # a fire at the range's start is in the range
REPLACED_BY_TIMING = ("cron", "every", "anchor")


def spec_of(row: ScheduleRow) -> ScheduleSettings:
    try:
        return read_definition(row.definition)
    except DefinitionError as exc:
        raise Refused(f"schedule {row.name!r} cannot be read: {exc}") from None


def found(row: ScheduleRow | None, name: str, settings: Settings) -> ScheduleRow:
    """The schedule, or why there is none (not loaded yet, or no such name)."""
    if row is None or row.removed_at is not None:
        if name in settings.schedules:
            raise Refused(f"schedule {name!r} is {NOT_LOADED}", "missing", "name")
        raise Refused(f"no schedule named {name!r}", "missing", "name")
    return row


def file_differs(row: ScheduleRow, settings: Settings) -> bool:
    """A schedule of the file's that the file now defines otherwise (edited, not
    yet reloaded)."""
    spec = settings.schedules.get(row.name)
    return row.origin == "file" and spec is not None and definition(spec) != row.definition


def when(spec: ScheduleSettings) -> str:
    return f"cron '{spec.cron}'" if spec.cron else f"every {format_duration(spec.every or 0)}"


def state(row: ScheduleRow, spec: ScheduleSettings, ended: str | None = None) -> str:
    """Paused (by whom, why), disabled, ended (why: ``ended_why``) or enabled."""
    if row.paused:
        return f"paused by {row.paused_by}: {row.pause_note or '(no note)'}"
    if not spec.enabled:
        return "disabled"
    return f"ended: {ended}" if ended else "enabled"


def ended_why(
    row: ScheduleRow, spec: ScheduleSettings, settings: Settings, now: datetime
) -> str | None:
    """Why a schedule fires no more (its ``max_runs`` made, its ``end_at`` passed), or None."""
    if spec.max_runs is not None and row.runs_made >= spec.max_runs:
        return f"it has made its {spec.max_runs} runs (max_runs)"
    end = timing_of(spec, settings).end
    if end is not None and end < now:
        return f"its end_at ({end.isoformat()}) has passed"
    return None


def limits(row: ScheduleRow, spec: ScheduleSettings) -> dict[str, Any]:
    """Its window, its runs counted against ``max_runs``, its bound on runs at once."""
    return {
        "start_at": spec.start_at.isoformat() if spec.start_at else None,
        "end_at": spec.end_at.isoformat() if spec.end_at else None,
        "max_runs": spec.max_runs,
        "runs_made": row.runs_made,
        "max_concurrent": spec.max_concurrent,
    }


def fire_json(fire: Fire) -> dict[str, Any]:
    return {"at": fire.at.isoformat(), "local": fire.local.isoformat(), "note": fire.note}


def run_json(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "schedule": run.schedule,
        "fire_time": run.fire_time.isoformat(),
        "attempt": run.attempt,
        "trigger": run.trigger,
        "status": run.status,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": run.error,
        "output": run.output,
        "note": run.note,
        "retry_of": run.retry_of,
        "cancel_requested": {
            "at": run.cancel_requested_at.isoformat(),
            "by": run.cancel_requested_by,
            "note": run.cancel_note,
        }
        if run.cancel_requested_at
        else None,
    }


def notification_json(sent: NotificationRow) -> dict[str, Any]:
    return {
        "id": sent.id,
        "at": sent.at.isoformat(),
        "rule": sent.rule,
        "subject": sent.subject,
        "event": sent.event,
        "target": sent.target,
        "ok": sent.ok,
        "answer": sent.answer,
        "title": sent.title,
        "text": sent.text,
    }


def listing(
    rows: Sequence[ScheduleRow], recent: Sequence[RunRow], settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """Every schedule with its next fire and last run; the file's schedules not
    loaded yet too. ``recent``: runs newest first."""
    last = {r.schedule: r for r in reversed(recent)}  # newest wins
    out = []
    for row in rows:
        spec = spec_of(row)
        ended = ended_why(row, spec, settings, now)
        shown = state(row, spec, ended)
        if file_differs(row, settings):
            shown += f" ({FILE_DIFFERS})"
        live = spec.enabled and not row.paused and not ended
        upcoming = next_fires(timing_of(spec, settings), now) if live else []
        run = last.get(row.name)
        out.append(
            {
                "name": row.name,
                "job": spec.job,
                "when": when(spec),
                "timezone": str(zone_of(spec, settings)),
                "origin": row.origin,
                "state": shown,
                "paused": row.paused,
                "next": fire_json(upcoming[0]) if upcoming else None,
                "last_run": {"status": run.status, "fire_time": run.fire_time.isoformat()}
                if run
                else None,
                **limits(row, spec),
            }
        )  # fmt: skip
    loaded = {row.name for row in rows}
    for name, spec in settings.schedules.items():
        if name not in loaded:
            out.append(
                {
                    "name": name, "job": spec.job, "when": when(spec),
                    "timezone": str(zone_of(spec, settings)), "origin": "file",
                    "state": NOT_LOADED, "paused": False, "next": None, "last_run": None,
                    **limits(ScheduleRow(0, name, {}, "file", 0, False, None, None, None, None,
                                         now, now), spec),
                }
            )  # fmt: skip
    return out


def detail(
    row: ScheduleRow, runs: Sequence[RunRow], settings: Settings, now: datetime, count: int = 5
) -> dict[str, Any]:
    spec = spec_of(row)
    ended = ended_why(row, spec, settings, now)
    upcoming = [] if ended else next_fires(timing_of(spec, settings), now, count)
    return {
        "name": row.name,
        "origin": row.origin,
        "revision": row.revision,
        "state": state(row, spec, ended),
        **limits(row, spec),
        "paused": row.paused,
        "pause_note": row.pause_note,
        "paused_by": row.paused_by,
        "file_differs": file_differs(row, settings),
        "definition": row.definition,
        "next": [fire_json(f) for f in upcoming],
        "runs": [run_json(r) for r in runs],
    }


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise Refused(
            f"invalid name {name!r}: use letters, digits, '_', '-', '.', starting with a letter",
            "usage",
            "name",
        )


def built(fields: dict[str, Any], name: str, settings: Settings) -> dict[str, Any]:
    """The definition to store, checked as the file's schedules are: its own
    settings, and what it names (notify targets, channels, sources, a calendar)
    against the file."""
    try:
        stored = definition(read_definition(fields, name))
    except DefinitionError as exc:
        raise Refused(f"not a valid schedule: {exc}") from None
    outline = {  # what a schedule may name: the file's channels, sources, targets, calendar
        "channels": dict.fromkeys(settings.channels, True),
        "sources": dict.fromkeys(settings.sources, True),
        "notify": dict.fromkeys(settings.notify, True),
        "holidays": settings.holidays,
        "timezone": settings.timezone,
    }
    problems = schedule_problems(stored, outline)
    if problems:
        raise Refused(f"not a valid schedule: {'; '.join(map(str, problems))}")
    return stored


def new_definition(name: str, fields: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A schedule of the operator's own: a name the file does not use."""
    check_name(name)
    if name in settings.schedules:
        raise Refused(
            f"schedule {name!r} is the file's: change it there (a scheduler loads it on "
            "SIGHUP), or give yours another name",
            "data",
            "name",
        )
    return built(fields, name, settings)


def edited_definition(
    row: ScheduleRow, changes: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """The definition with ``changes`` applied (a new cron or every replaces the
    old timing, anchor included), checked."""
    fields = dict(row.definition)
    if "cron" in changes or "every" in changes:
        for key in REPLACED_BY_TIMING:
            fields.pop(key, None)
    fields.update(changes)
    return built(fields, row.name, settings)


def pause_note(note: str | None, names: Names = {}) -> str:  # noqa: B006 - read only
    """The note, stripped, as the text rule (``text_problem``) lets it be stored."""
    said = (note or "").strip()
    if not said:
        raise Refused(
            f"{names.get('note', 'note')}: say why it is paused (shown with the schedule)",
            "usage",
            "note",
        )
    problem = text_problem(said, NOTE_MAX)
    if problem is not None:
        raise Refused(f"{names.get('note', 'note')}: {problem}", "usage", "note")
    return said


def backfill_fires(
    row: ScheduleRow,
    settings: Settings,
    start: datetime,
    end: datetime,
    now: datetime,
    names: Names = {},  # noqa: B006 - read only
) -> list[datetime]:
    """One fire time per fire of ``start <= at <= end``: only fires that have
    passed, at most ``MAX_BACKFILL``."""
    since, until = names.get("from", "from"), names.get("until", "until")
    if end <= start:
        raise Refused(f"{until} must be later than {since}", "usage", "until")
    if end > now:
        raise Refused(
            f"{until} is in the future: a backfill is for fires that have passed "
            "(the schedule runs the others itself)",
            "usage",
            "until",
        )
    timing = timing_of(spec_of(row), settings)
    fires: list[datetime] = []
    try:
        for fire in fires_between(timing, start - EPSILON, end):
            fires.append(fire.at)
            if len(fires) > MAX_BACKFILL:
                raise Refused(f"more than {MAX_BACKFILL:,} fires in that range", "usage", "from")
    except OverflowError:
        raise Refused(
            f"{since}/{until}: fires beyond the years 1 to 9999", "usage", "until"
        ) from None
    return fires


def when_it_starts(row: ScheduleRow, one: bool) -> str:
    """When queued runs start (``one``: a single run)."""
    it, starts = ("it", "it starts") if one else ("them", "they start")
    if row.paused:
        return f"the schedule is paused: {starts} when it is resumed"
    if not spec_of(row).enabled:
        return f"the schedule is disabled: {starts} when it is enabled"
    return f"a scheduler starts {it} within a second or so"


# --- the steps, on the store ---------------------------------------------------------------


async def found_row(op: Operator, name: str) -> ScheduleRow:
    """The schedule named so, or ``Refused`` (missing) saying why there is none."""
    return found(await op.store.schedule(name), name, op.settings)


async def schedule_listing(op: Operator, now: datetime) -> list[dict[str, Any]]:
    """Every schedule with its next fire and last run, the file's not loaded yet too."""
    rows = await op.store.schedules()
    recent = await op.store.runs(limit=1000)
    return listing(rows, recent, op.settings, now)


@dataclass(frozen=True)
class Shown:
    row: ScheduleRow
    spec: ScheduleSettings
    runs: list[RunRow]
    detail: dict[str, Any]


async def shown(op: Operator, name: str, now: datetime, runs: int = 10) -> Shown:
    """A schedule, its next fires and its ``runs`` most recent runs."""
    row = await found_row(op, name)
    recent = await op.store.runs(row.name, limit=runs) if runs else []
    return Shown(row, spec_of(row), recent, detail(row, recent, op.settings, now))


async def add(op: Operator, name: str, fields: dict[str, Any]) -> ScheduleRow:
    """A schedule of the operator's own, checked as the file's are."""
    stored = new_definition(name, fields, op.settings)
    return await op.store.put_schedule(name, stored, op.actor, create=True)


async def edit(op: Operator, name: str, changes: dict[str, Any]) -> tuple[ScheduleRow, bool]:
    """One of the operator's schedules with ``changes`` made; whether it changed."""
    row = await found_row(op, name)
    stored = edited_definition(row, changes, op.settings)
    if stored == row.definition:
        return row, False
    return await op.store.put_schedule(row.name, stored, op.actor, create=False), True


async def remove(op: Operator, name: str) -> ScheduleRow:
    """Remove one of the operator's schedules (its runs stay)."""
    row = await found_row(op, name)
    return await op.store.remove_schedule(row.name, op.actor)


async def pause(op: Operator, name: str, note: str | None, names: Names = {}) -> ScheduleRow:  # noqa: B006
    """Pause, saying why (again: the note is replaced)."""
    said = pause_note(note, names)
    row = await found_row(op, name)
    return await op.store.pause_schedule(row.name, True, said, op.actor, reason=op.reason)


async def resume(op: Operator, name: str) -> tuple[ScheduleRow, bool]:
    """Resume; whether it was paused (one that is not is left as it is)."""
    row = await found_row(op, name)
    if not row.paused:
        return row, False
    return await op.store.pause_schedule(row.name, False, None, op.actor, reason=op.reason), True


async def run_now(op: Operator, name: str, now: datetime) -> tuple[ScheduleRow, int]:
    """Queue a run of the job now (trigger ``manual``); the schedule and the run's id."""
    row = await found_row(op, name)
    queued = await op.store.queue_runs(
        row.id, [now], "manual", note="run now", actor=op.actor, reason=op.reason
    )
    if not queued:
        raise Refused("the run was not queued (one for this very instant exists)", "conflict")
    return row, queued[0]


@dataclass(frozen=True)
class Backfilled:
    row: ScheduleRow
    fires: int  # fires in the range
    queued: list[int]  # the runs queued (none on a dry run)
    dry_run: bool

    @property
    def already(self) -> int:
        """Fires of the range already in the ledger."""
        return 0 if self.dry_run else self.fires - len(self.queued)


async def backfill(
    op: Operator,
    name: str,
    start: datetime,
    end: datetime,
    now: datetime,
    dry_run: bool = False,
    names: Names = {},  # noqa: B006 - read only
) -> Backfilled:
    """One run per fire of ``start <= at <= end`` (fires that have passed), each
    fire already in the ledger left as it is."""
    row = await found_row(op, name)
    fires = backfill_fires(row, op.settings, start, end, now, names)
    if dry_run:
        return Backfilled(row, len(fires), [], True)
    queued = await op.store.queue_runs(
        row.id, fires, "backfill", note="backfill", actor=op.actor, reason=op.reason
    )
    return Backfilled(row, len(fires), queued, False)


@dataclass(frozen=True)
class Cancelled:
    run: RunRow
    changed: bool  # False: a cancel was asked for already

    @property
    def said(self) -> str:
        """What became of it, in a line."""
        run = self.run
        if run.status == CANCELLED_RUN:
            return f"run {run.id} of {run.schedule} cancelled (it had not started)"
        if run.status == RUNNING:
            again = "" if self.changed else " (asked already)"
            return (
                f"run {run.id} of {run.schedule}: cancel asked for{again}; the scheduler "
                f"running it stops its job within {CANCEL_SEEN} or so and records it cancelled"
            )
        return f"run {run.id} of {run.schedule} is {run.status}"


CANCEL_SEEN = "a few seconds"  # how soon a scheduler sees a cancel (it looks every second)


async def cancel_run(op: Operator, name: str, run_id: int, note: str | None = None) -> Cancelled:
    """Cancel a run of the schedule: a queued one at once, a running one by its
    scheduler (which stops its job; not retried). Audited with who asked and why."""
    row = await op.store.schedule(name)
    if row is None:
        found(row, name, op.settings)
    said = (note or "").strip() or None
    run, changed = await op.store.cancel_run(run_id, op.actor, said, schedule=name)
    return Cancelled(run, changed)


async def notifications(
    op: Operator,
    limit: int,
    before: int | None = None,
    rule: str | None = None,
    subject: str | None = None,
    target: str | None = None,
    events: Sequence[str] = (),
    ok: bool | None = None,
) -> list[NotificationRow]:
    """The notifications sent (or tried), newest first."""
    return await op.store.notifications(
        limit=limit, before_id=before, rule=rule, subject=subject, target=target,
        events=events, ok=ok,
    )  # fmt: skip


async def ledger(
    op: Operator,
    name: str,
    limit: int,
    before: int | None = None,
    statuses: Sequence[str] = (),
    removed_too: bool = False,
) -> list[RunRow]:
    """A schedule's runs, newest first (``removed_too``: also of one removed,
    whose ledger stays)."""
    row = await op.store.schedule(name)
    if not (removed_too and row is not None):
        found(row, name, op.settings)
    return await op.store.runs(name, limit=limit, before_id=before, statuses=statuses)
