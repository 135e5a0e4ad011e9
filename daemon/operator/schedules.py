"""What an operator may do to schedules, shared by the CLI (``outboxd
schedules …``) and the control API: the checks before a change, and how a
schedule, a fire and a run are shown. The store calls are each face's own
(the CLI's store is synchronous, the API's a coroutine); the rules are here."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from daemon.config.loader import schedule_problems
from daemon.config.schedules import DefinitionError, definition, read_definition, timing_of, zone_of
from daemon.config.settings import ScheduleSettings, Settings
from daemon.domain.errors import Refused
from daemon.domain.schedules import RunRow, ScheduleRow
from daemon.domain.units import format_duration
from daemon.scheduling.fires import Fire, fires_between, next_fires

MAX_BACKFILL = 10_000  # runs one backfill may queue
NOT_LOADED = "in the file, not loaded yet: a scheduler loads it when it starts or on SIGHUP"
FILE_DIFFERS = "the file says otherwise: a scheduler loads it on SIGHUP"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
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
            raise Refused(f"schedule {name!r} is {NOT_LOADED}", "missing")
        raise Refused(f"no schedule named {name!r}", "missing")
    return row


def file_differs(row: ScheduleRow, settings: Settings) -> bool:
    """A schedule of the file's that the file now defines otherwise (edited, not
    yet reloaded)."""
    spec = settings.schedules.get(row.name)
    return row.origin == "file" and spec is not None and definition(spec) != row.definition


def when(spec: ScheduleSettings) -> str:
    return f"cron '{spec.cron}'" if spec.cron else f"every {format_duration(spec.every or 0)}"


def state(row: ScheduleRow, spec: ScheduleSettings) -> str:
    if row.paused:
        return f"paused by {row.paused_by}: {row.pause_note or '(no note)'}"
    return "enabled" if spec.enabled else "disabled"


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
        shown = state(row, spec)
        if file_differs(row, settings):
            shown += f" ({FILE_DIFFERS})"
        upcoming = (
            next_fires(timing_of(spec, settings), now) if spec.enabled and not row.paused else []
        )
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
            }
        )
    loaded = {row.name for row in rows}
    for name, spec in settings.schedules.items():
        if name not in loaded:
            out.append(
                {
                    "name": name, "job": spec.job, "when": when(spec),
                    "timezone": str(zone_of(spec, settings)), "origin": "file",
                    "state": NOT_LOADED, "paused": False, "next": None, "last_run": None,
                }
            )  # fmt: skip
    return out


def detail(
    row: ScheduleRow, runs: Sequence[RunRow], settings: Settings, now: datetime, count: int = 5
) -> dict[str, Any]:
    spec = spec_of(row)
    upcoming = next_fires(timing_of(spec, settings), now, count)
    return {
        "name": row.name,
        "origin": row.origin,
        "revision": row.revision,
        "state": state(row, spec),
        "paused": row.paused,
        "pause_note": row.pause_note,
        "paused_by": row.paused_by,
        "file_differs": file_differs(row, settings),
        "definition": row.definition,
        "next": [fire_json(f) for f in upcoming],
        "runs": [run_json(r) for r in runs],
    }


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
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
            field="name",
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


Names = Mapping[str, str]  # how a face calls a field: {"until": "--until"} on the CLI


def pause_note(note: str | None, names: Names = {}) -> str:  # noqa: B006 - read only
    if not (note or "").strip():
        raise Refused(
            f"{names.get('note', 'note')}: say why it is paused (shown with the schedule)",
            "usage",
            "note",
        )
    return (note or "").strip()


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
                raise Refused(f"more than {MAX_BACKFILL:,} fires in that range", "usage")
    except OverflowError:
        raise Refused(f"{since}/{until}: fires beyond the years 1 to 9999", "usage") from None
    return fires


def when_it_starts(row: ScheduleRow, one: bool) -> str:
    """When queued runs start (``one``: a single run)."""
    it, starts = ("it", "it starts") if one else ("them", "they start")
    if row.paused:
        return f"the schedule is paused: {starts} when it is resumed"
    if not spec_of(row).enabled:
        return f"the schedule is disabled: {starts} when it is enabled"
    return f"a scheduler starts {it} within a second or so"
