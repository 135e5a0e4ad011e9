"""A schedule's settings as the scheduler and the CLI read them: kept in the
database as a definition (its settings as JSON), read back through the same
validation as the YAML file, turned into the timing of its fires (its zone, its
DST rules, its business days and holiday calendar), and the waits between the
runs of a fire that failed."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from daemon.config.settings import ScheduleSettings, schedule_settings
from daemon.config.timing import calendar, timing_for, timing_of, zone_of

__all__ = [
    "DefinitionError", "calendar", "definition", "read_definition", "retry_at", "timing_for",
    "timing_of", "zone_of",
]  # fmt: skip


@cache
def _schedule() -> TypeAdapter[Any]:
    """A schedule of any job kind (every job kind's module is loaded)."""
    from daemon.jobs.registry import JOB_KINDS

    return TypeAdapter(schedule_settings(tuple(JOB_KINDS)))


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
        return _schedule().validate_python(data)
    except ValidationError as exc:
        from daemon.config.loader import problems_at

        issues = problems_at(exc, data, ("schedules", name))
        raise DefinitionError("; ".join(map(str, issues))) from None


def retry_at(schedule: ScheduleSettings, attempt: int, now: datetime) -> datetime | None:
    """When the next run of a fire whose ``attempt``-th run failed is due: after
    the backoff doubling from ``retry.backoff`` up to ``retry.max_backoff``; None
    once ``retry.max_attempts`` runs were made."""
    policy = schedule.retry
    if attempt >= policy.max_attempts:
        return None
    wait = min(policy.max_backoff, policy.backoff * 2.0 ** min(attempt - 1, 30))
    return now + timedelta(seconds=wait)
