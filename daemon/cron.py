"""Standard crontab expressions, turned into APScheduler 3 triggers.

APScheduler's own ``CronTrigger.from_crontab`` numbers the days of the week from
Monday = 0, unlike cron, where 0 and 7 are Sunday. This module reads the
day-of-week field with cron's meaning and hands APScheduler day names.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DOW_PART = re.compile(r"(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/(\d+))?")


def _day_number(token: str) -> int:
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"day of week {token!r} is not 0-7 or sun-sat")


def _days_of_week(field: str) -> str:
    """Cron's day-of-week field as an APScheduler day-name list."""
    text = field.lower()
    if text in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in text.split(","):
        match = _DOW_PART.fullmatch(part)
        if not match:
            raise ValueError(f"invalid day-of-week part {part!r}")
        start, end, step = match.groups()
        if start == "*":
            if end:
                raise ValueError(f"invalid day-of-week part {part!r}")
            low, high = 0, 6
        else:
            low = _day_number(start)
            high = _day_number(end) if end else (6 if step else low)
        if high < low:
            raise ValueError(f"day-of-week range {part!r} runs backwards")
        stride = int(step) if step else 1
        if stride == 0:
            raise ValueError(f"day-of-week step in {part!r} must be positive")
        days.update(day % 7 for day in range(low, high + 1, stride))
    order = (1, 2, 3, 4, 5, 6, 0)
    return ",".join(_DAY_NAMES[d] for d in order if d in days)


def crontab_trigger(expression: str, timezone: tzinfo | str) -> CronTrigger:
    """A trigger for a five-field crontab line (or an ``@daily``-style macro).

    Raises ``ValueError`` with the reason when the expression is not valid.
    """
    text = _MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_days_of_week(day_of_week),
            timezone=timezone,
        )
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
