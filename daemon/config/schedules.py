"""A schedule's settings as the scheduler and the CLI read them: kept in the
database as a definition (its settings as JSON), read back through the same
validation as the YAML file, turned into the timing of its fires (its zone, its
DST rules, its business days and holiday calendar), and the waits between the
runs of a fire that failed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from daemon.config.settings import AnyScheduleSettings, HolidaySettings, ScheduleSettings, Settings
from daemon.scheduling.cron import parse_crontab
from daemon.scheduling.fires import EPOCH, Timing

_SCHEDULE: TypeAdapter[Any] = TypeAdapter(AnyScheduleSettings)


class DefinitionError(ValueError):
    """A stored or given definition that is not a valid schedule; the text lists why."""


def definition(schedule: ScheduleSettings) -> dict[str, Any]:
    """What is stored: the settings as JSON, every default written out, so a
    change of a default is a change of the schedule."""
    return schedule.model_dump(mode="json")


def read_definition(data: Any, name: str = "schedule") -> ScheduleSettings:
    """A definition checked as the YAML file's schedules are; ``DefinitionError``
    naming each problem with its path, in the words of ``check-config``."""
    try:
        return _SCHEDULE.validate_python(data)
    except ValidationError as exc:
        from daemon.config.loader import problems_at

        issues = problems_at(exc, data, ("schedules", name))
        raise DefinitionError("; ".join(map(str, issues))) from None


def zone_of(schedule: ScheduleSettings, settings: Settings) -> ZoneInfo:
    return ZoneInfo(schedule.timezone or settings.timezone)


@functools.lru_cache(maxsize=32)
def calendar(country: str, subdiv: str | None) -> Callable[[date], bool]:
    """Whether a date is a public holiday there (the ``holidays`` package, its
    years made as they are asked for)."""
    import holidays

    days = holidays.country_holidays(country, subdiv=subdiv)
    return lambda day: day in days


def timing_of(schedule: ScheduleSettings, settings: Settings) -> Timing:
    holidays: HolidaySettings | None = schedule.holidays or settings.holidays
    is_holiday = calendar(holidays.country, holidays.subdiv) if holidays else (lambda _d: False)
    anchor = schedule.anchor or EPOCH
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=zone_of(schedule, settings))
    return Timing(
        zone=zone_of(schedule, settings),
        cron=parse_crontab(schedule.cron) if schedule.cron else None,
        every=schedule.every,
        anchor=anchor,
        on_missing_time=schedule.on_missing_time,
        on_repeated_time=schedule.on_repeated_time,
        skip_weekends="weekends" in schedule.skip,
        skip_holidays="holidays" in schedule.skip,
        if_skipped=schedule.if_skipped,
        holidays=is_holiday,
    )


def retry_at(schedule: ScheduleSettings, attempt: int, now: datetime) -> datetime | None:
    """When the next run of a fire whose ``attempt``-th run failed is due: after
    the backoff doubling from ``retry.backoff`` up to ``retry.max_backoff``; None
    once ``retry.max_attempts`` runs were made."""
    policy = schedule.retry
    if attempt >= policy.max_attempts:
        return None
    wait = min(policy.max_backoff, policy.backoff * 2.0 ** min(attempt - 1, 30))
    return now + timedelta(seconds=wait)
