"""Standard crontab expressions, read and matched: pure.

Five fields, ``minute hour day-of-month month day-of-week``, each ``*``, a number,
a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a list of those;
months ``jan``-``dec`` and days ``sun``-``sat`` by name; day-of-week 0 and 7 are
both Sunday (APScheduler's own numbering starts at Monday = 0; this module does
not use it). Macros: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``,
``@daily`` (``@midnight``), ``@hourly``.

As in cron, when both day-of-month and day-of-week are restricted (neither
starts with ``*``), a day matches if **either** matches: ``0 6 1 * 1`` runs on
the first of the month and on every Monday.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_PART = re.compile(r"(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/([0-9]+))?")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names for low, low+1, ...
    first_name: int = 0  # the number of names[0]


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day-of-week", 0, 7, DAYS, 0),
)


@dataclass(frozen=True)
class Crontab:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday … 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, day: date) -> bool:
        """Whether the schedule runs on this date (at ``times()``)."""
        if day.month not in self.months:
            return False
        on_day = day.day in self.days
        on_weekday = day.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return on_day or on_weekday
        if self.days_restricted:
            return on_day
        if self.weekdays_restricted:
            return on_weekday
        return True

    def times(self) -> list[time]:
        """The wall-clock times of a matching day, in order."""
        return [time(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]


def parse_crontab(expression: str) -> Crontab:
    """The expression read; ``ValueError`` with the reason when it is not valid."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is text, got {type(expression).__name__}")
    text = expression.strip().lower()
    if text.startswith("@"):
        if text not in MACROS:
            raise ValueError(
                f"invalid cron expression {expression!r}: unknown macro "
                f"(one of {', '.join(sorted(MACROS))})"
            )
        text = MACROS[text]
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    try:
        values = [_values(field, spec) for field, spec in zip(fields, _FIELDS, strict=True)]
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    minutes, hours, days, months, weekdays = values
    return Crontab(
        expression,
        minutes,
        hours,
        days,
        months,
        frozenset(d % 7 for d in weekdays),
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
    )


def _number(token: str, spec: _Field) -> int:
    if token in spec.names:
        return spec.names.index(token) + spec.first_name
    if token.isdigit() and len(token) <= 2 and spec.low <= int(token) <= spec.high:
        return int(token)
    return _out_of_range(token, spec)


def _out_of_range(token: str, spec: _Field) -> int:
    named = f" or {spec.names[0]}-{spec.names[-1]}" if spec.names else ""
    raise ValueError(f"{spec.name} {token!r} is not {spec.low}-{spec.high}{named}")


def _values(field: str, spec: _Field) -> frozenset[int]:
    found: set[int] = set()
    for part in field.split(","):
        match = _PART.fullmatch(part)
        if not match:
            raise ValueError(f"invalid {spec.name} part {part!r}")
        start, end, step = match.groups()
        stride = int(step) if step is not None else 1
        if stride == 0 or len(step or "") > 2:
            raise ValueError(f"{spec.name} step in {part!r} must be 1-99")
        if start == "*":
            if end is not None:
                raise ValueError(f"invalid {spec.name} part {part!r}")
            low, high = spec.low, spec.high if spec.name != "day-of-week" else 6
        else:
            low = _number(start, spec)
            high = _number(end, spec) if end is not None else (spec.high if step else low)
        if high < low:
            raise ValueError(f"{spec.name} range {part!r} runs backwards")
        found.update(range(low, high + 1, stride))
    return frozenset(found)
