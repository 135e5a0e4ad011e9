"""Crontab lines: read in cronie's dialect here, their days matched by croniter.

Five fields, ``minute hour day-of-month month day-of-week`` (``docs/scheduler.md``
has the whole dialect as a table):

| written                  | means                                                     |
|--------------------------|-----------------------------------------------------------|
| ``*``, ``5``, ``1-5``    | every value, one, a range (both ends in)                  |
| ``*/15``, ``1-30/10``    | every 15th value from the field's first; every 10th of 1-30 |
| ``5/15``                 | ``5-MAX/15``: from 5 to the field's last value             |
| ``1,15,L``               | a list of any of these                                    |
| ``jan``-``dec``          | months by name; ``sun``-``sat``: days of the week by name  |
| day-of-week ``0``, ``7`` | both Sunday; the field runs 0-7, so ``5/2`` is ``5-7/2``   |
|                          | (Friday, Sunday) and ``fri-sun`` is ``5-7``                |
| day-of-month ``L``       | the last day of the month; ``L-2``: two days before it      |
| day-of-week ``1#1``      | the first Monday of the month (``#1`` to ``#5``)            |
| ``@daily`` …             | ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``,     |
|                          | ``@daily`` (``@midnight``), ``@hourly``                     |

**The day rule** is cronie's (Debian's cron, vixie's code): when either day
field starts with ``*`` a day must match both, otherwise it must match either.
``0 0 */2 * *`` runs on the 1st, 3rd, 5th …; ``0 0 */10 * 1`` on the 1st, 11th,
21st and 31st that are Mondays; ``0 6 1 * 1`` on the first of the month and on
every Monday.

What it runs on is croniter: given the days in the form it reads without
surprises (numbers, ``*``, ``L`` alone, ``D#N``), it finds the dates a crontab
matches (month lengths, leap years, weekdays, ``L``, ``#``). Each side of an
"either" is its own croniter (croniter's own union intersects a ``#``). ``L-N``
is ours, and so is ``L`` in a list: croniter does not read the one and miscounts
the other (``L`` beside 30 other days reads to it as every day), so it is given
the days they can be and each date it finds is checked here. The times of a
matching day are the hours crossed with the minutes. An expression no date
matches is refused: the calendar repeats every 400 years, so a search of 400
years from any start is the whole answer.

Pure, no clock; croniter is imported when the first expression is read.
"""

from __future__ import annotations

import calendar
import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

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
MAX_STEP = 99
CYCLE_YEARS = 400  # the Gregorian calendar repeats after 400 years (146,097 days: whole weeks)
_PROBE = date(2000, 1, 1)  # where the search for a first match starts (any date would do)
_VALUE = r"[a-z0-9]+"
_RANGE = re.compile(rf"(\*|{_VALUE})(?:-({_VALUE}))?(?:/([0-9]+))?")
_NTH = re.compile(rf"({_VALUE})#([0-9]+)")
_BEFORE_LAST = re.compile(r"l-([0-9]+)")
_FOREIGN = (  # other dialects' marks, named when met
    (re.compile(r".*\?.*"), "'?' is Quartz's: write *"),
    (re.compile(r"[0-9]*w[0-9]*"), "'W' (the nearest weekday) is not read"),
    (re.compile(r"h(\(.*)?"), "'H' (a hashed value) is not read"),
    (re.compile(r"r(\(.*)?"), "'R' (a random value) is not read"),
)


@dataclass(frozen=True)
class _Spec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names for first_name, first_name + 1, ...
    first_name: int = 0


_SPECS = (
    _Spec("minute", 0, 59),
    _Spec("hour", 0, 23),
    _Spec("day-of-month", 1, 31),
    _Spec("month", 1, 12, MONTHS, 1),
    _Spec("day-of-week", 0, 7, DAYS, 0),
)


@dataclass(frozen=True)
class _MonthDays:
    """A day-of-month field: its days, and ``L``, ``L-N`` of each month."""

    days: frozenset[int]
    last: bool = False  # L
    before_last: frozenset[int] = frozenset()  # L-N: N days before the last

    @property
    def checked(self) -> bool:
        """Whether each date croniter finds is checked here: for ``L-N``, which croniter
        does not read, and for ``L`` in a list (croniter counts it as one more day, and
        ``L`` beside 30 others reads to it as every day of the month)."""
        return bool(self.before_last) or (self.last and bool(self.days))

    def croniter_text(self) -> str:
        """What croniter is given: the days, ``L``, and, when each date is checked
        here, every day that ``L`` and ``L-N`` can be."""
        if not self.checked:
            return ",".join([str(d) for d in sorted(self.days)] + (["l"] if self.last else []))
        days = set(self.days)
        for n in self.before_last | ({0} if self.last else set()):
            days.update(length - n for length in (28, 29, 30, 31) if length - n >= 1)
        return ",".join(str(d) for d in sorted(days))

    def exact(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        return (
            day.day in self.days
            or (self.last and day.day == last)
            or (last - day.day) in self.before_last
        )


@dataclass(frozen=True)
class _Side:
    """Days croniter finds (``0 0 DOM MONTH DOW``), each checked here when ``check``
    is given (``L-N``, ``L`` in a list)."""

    text: str
    check: _MonthDays | None
    matcher: Any = field(compare=False, repr=False)  # a croniter, copied for each walk

    def days(self, start: date, until: date | None = None) -> Iterator[date]:
        """The matching days from ``start`` on (before ``until``, if given)."""
        from croniter import CroniterBadDateError

        walk = copy.copy(self.matcher)
        walk.set_current(datetime.combine(start, time()) - timedelta(minutes=1), force=True)
        while True:
            try:
                found = walk.get_next(datetime).date()
            except CroniterBadDateError:  # none within CYCLE_YEARS: none ever
                return
            if until is not None and found >= until:
                return
            if self.check is None or self.check.exact(found):
                yield found

    def fires(self) -> bool:
        """Whether any day matches: one does within a cycle of the calendar, or none ever."""
        end = _PROBE.replace(year=_PROBE.year + CYCLE_YEARS)
        return next(self.days(_PROBE, end), None) is not None


@dataclass(frozen=True)
class Crontab:
    """A crontab line read: the wall-clock times of a matching day, and the days."""

    expression: str  # as written
    minutes: frozenset[int]
    hours: frozenset[int]
    either: bool  # cronie's rule: neither day field starts with *, so either may match
    sides: tuple[_Side, ...] = field(repr=False)

    @functools.cached_property
    def times(self) -> tuple[time, ...]:
        """The wall-clock times of a matching day, in order."""
        return tuple(time(h, m) for h in sorted(self.hours) for m in sorted(self.minutes))

    def days(self, start: date) -> Iterator[date]:
        """The days the schedule runs on (at ``times``), from ``start`` on, in order."""
        walks = [side.days(start) for side in self.sides]
        heads: list[date | None] = [next(w, None) for w in walks]
        while True:
            found = [d for d in heads if d is not None]
            if not found:
                return
            day = min(found)
            yield day
            for i, head in enumerate(heads):
                if head == day:
                    heads[i] = next(walks[i], None)

    def matches(self, day: date) -> bool:
        """Whether the schedule runs on this date."""
        return next(self.days(day), None) == day


def parse_crontab(expression: str) -> Crontab:
    """The expression read; ``ValueError`` with the reason when it is not valid or
    when no date ever matches it."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is text, got {type(expression).__name__}")
    return _parse(expression)


@functools.lru_cache(maxsize=1024)
def _parse(expression: str) -> Crontab:
    text = expression.strip().lower()
    if text.startswith("@"):
        if text not in MACROS:
            raise ValueError(
                f"invalid cron expression {expression!r}: unknown macro "
                f"(one of {', '.join(sorted(MACROS))})"
            )
        text = MACROS[text]
    fields = re.split(r"[ \t]+", text) if text else []
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    try:
        minutes = _values(fields[0], _SPECS[0])
        hours = _values(fields[1], _SPECS[1])
        month_days = _month_days(fields[2])
        months = _values(fields[3], _SPECS[3])
        weekdays = _weekdays(fields[4])
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    month_text = _listed(months, 1, 12)
    dom = month_days.croniter_text() if month_days.days != frozenset(range(1, 32)) else "*"
    check = month_days if month_days.checked else None
    # either: each field its own side (the other *), a day of either side runs
    candidates = [(dom, "*", check), ("*", weekdays, None)] if either else [(dom, weekdays, check)]
    sides = tuple(
        side
        for side in (_side(f"0 0 {d} {month_text} {w}", c) for d, w, c in candidates)
        if side.fires()
    )
    if not sides:
        raise ValueError(
            f"invalid cron expression {expression!r}: it never fires "
            "(no date has that day of the month in those months"
            + ("" if either or fields[4].startswith("*") else " on those days of the week")
            + ")"
        )
    return Crontab(expression, minutes, hours, either, sides)


def _side(text: str, check: _MonthDays | None) -> _Side:
    from croniter import croniter

    start = datetime.combine(_PROBE, time())  # each walk sets its own
    matcher = croniter(text, start, day_or=False, max_years_between_matches=CYCLE_YEARS + 1)
    return _Side(text, check, matcher)


def _listed(values: frozenset[int], low: int, high: int) -> str:
    if values == frozenset(range(low, high + 1)):
        return "*"
    return ",".join(str(v) for v in sorted(values))


# --- the fields --------------------------------------------------------------------------


def _number(token: str, spec: _Spec) -> int:
    if token in spec.names:
        return spec.names.index(token) + spec.first_name
    if token.isdigit() and len(token) <= 2 and spec.low <= int(token) <= spec.high:
        return int(token)
    _refuse_foreign(token, spec)
    named = f" or {spec.names[0]}-{spec.names[-1]}" if spec.names else ""
    raise ValueError(f"{spec.name} {token!r} is not {spec.low}-{spec.high}{named}")


def _refuse_foreign(token: str, spec: _Spec) -> None:
    for pattern, why in _FOREIGN:
        if pattern.fullmatch(token):
            raise ValueError(f"{spec.name} {token!r}: {why}")


def _range(part: str, spec: _Spec) -> range:
    """One list item: ``*``, ``N``, ``A-B``, each with ``/STEP``, or ``N/STEP``."""
    match = _RANGE.fullmatch(part)
    if not match:
        for token in re.split(r"[-/]", part):
            _refuse_foreign(token, spec)
        raise ValueError(f"invalid {spec.name} part {part!r}")
    start, end, step = match.groups()
    stride = int(step) if step is not None else 1
    if not 1 <= stride <= MAX_STEP or len(step or "") > 2:
        raise ValueError(f"{spec.name} step in {part!r} must be 1-{MAX_STEP}")
    if start == "*":
        if end is not None:
            raise ValueError(f"invalid {spec.name} part {part!r}")
        return range(spec.low, spec.high + 1, stride)
    low = _number(start, spec)
    if end is None:
        high = spec.high if step is not None else low  # N/STEP runs to the field's last
    else:
        high = _number(end, spec)
        if spec.name == "day-of-week" and high == 0 and low > 0:
            high = 7  # fri-sun: Sunday as 7 (cronie)
    if high < low:
        raise ValueError(f"{spec.name} range {part!r} runs backwards")
    return range(low, high + 1, stride)


def _values(text: str, spec: _Spec) -> frozenset[int]:
    found: set[int] = set()
    for part in text.split(","):
        found.update(_range(part, spec))
    return frozenset(found)


def _month_days(text: str) -> _MonthDays:
    spec = _SPECS[2]
    days: set[int] = set()
    last = False
    before: set[int] = set()
    for part in text.split(","):
        if part == "l":
            last = True
            continue
        match = _BEFORE_LAST.fullmatch(part)
        if match:
            n = int(match.group(1))
            if not 1 <= n <= 30 or len(match.group(1)) > 2:
                raise ValueError(f"day-of-month {part!r}: L-N takes N from 1 to 30")
            before.add(n)
            continue
        if "l" in part:
            raise ValueError(f"day-of-month {part!r}: L stands alone or as L-N")
        days.update(_range(part, spec))
    return _MonthDays(frozenset(days), last, frozenset(before))


def _weekdays(text: str) -> str:
    """The day-of-week field as croniter is to read it: ``*``, days 0-6, or ``D#N`` items."""
    spec = _SPECS[4]
    nth: set[str] = set()
    days: set[int] = set()
    for part in text.split(","):
        match = _NTH.fullmatch(part)
        if match:
            day = _number(match.group(1), spec) % 7
            n = int(match.group(2))
            if not 1 <= n <= 5 or len(match.group(2)) > 1:
                raise ValueError(f"day-of-week {part!r}: #N takes N from 1 to 5")
            nth.add(f"{day}#{n}")
            continue
        if "#" in part:
            raise ValueError(f"day-of-week {part!r}: # follows one day (1#1, mon#2)")
        if "l" in part:  # no day's name has an l
            raise ValueError(f"day-of-week {part!r}: L is read in day-of-month only")
        days.update(d % 7 for d in _range(part, spec))
    if nth and days:
        raise ValueError(f"day-of-week {text!r}: a list of D#N items cannot hold plain days too")
    if nth:
        return ",".join(sorted(nth))
    return _listed(frozenset(days), 0, 6)
