"""A schedule's settings made the timing of its fires (``daemon.scheduling.fires``):
its zone, its DST and business-day rules, its holiday calendar, the window from
``start_at`` to ``end_at``. Read by the scheduler, the CLI and the file's checks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from daemon.config.settings import HolidaySettings, ScheduleSettings, Settings
from daemon.scheduling.cron import parse_crontab
from daemon.scheduling.fires import EPOCH, Timing


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
    return timing_for(schedule, settings.timezone, settings.holidays)


def timing_for(
    schedule: ScheduleSettings, timezone: str, holidays: HolidaySettings | None
) -> Timing:
    """The timing, given the file's ``timezone`` and ``holidays`` (for a schedule
    without its own)."""
    zone = ZoneInfo(schedule.timezone or timezone)
    chosen = schedule.holidays or holidays
    is_holiday = calendar(chosen.country, chosen.subdiv) if chosen else (lambda _d: False)
    return Timing(
        zone=zone,
        cron=parse_crontab(schedule.cron) if schedule.cron else None,
        every=schedule.every,
        anchor=_aware(schedule.anchor, zone) or EPOCH,
        on_missing_time=schedule.on_missing_time,
        on_repeated_time=schedule.on_repeated_time,
        skip_weekends="weekends" in schedule.skip,
        skip_holidays="holidays" in schedule.skip,
        if_skipped=schedule.if_skipped,
        holidays=is_holiday,
        start=_aware(schedule.start_at, zone),
        end=_aware(schedule.end_at, zone),
    )


def _aware(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    """A setting's instant: a wall time in the schedule's zone unless it has an offset."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone)
