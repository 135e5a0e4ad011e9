"""When a schedule fires: a pure function of the schedule's timing and an instant.

A ``cron`` schedule fires at the wall-clock times its crontab names, in its
time zone. Where the zone changes its clocks:

| the wall time                         | ``on_missing_time`` / ``on_repeated_time`` |
|---------------------------------------|--------------------------------------------|
| does not exist (spring forward: 02:30 | ``shift`` (default): once, at the instant  |
| in Europe/Berlin on the last Sunday   | the clock would show it had it not jumped  |
| of March)                             | (03:30 CEST); ``skip``: not that day        |
| happens twice (fall back: 02:30 on    | ``once`` (default): at the first (CEST);   |
| the last Sunday of October)           | ``twice``: at both                          |

An ``every`` schedule fires at whole multiples of its interval from a fixed
anchor (the Unix epoch unless ``anchor`` is given), so every process computes
the same instants whatever its clock or zone; DST does not move them.

Business days: ``skip: [weekends, holidays]`` drops a fire on a Saturday or
Sunday (in the schedule's zone) or a public holiday, or, with
``if_skipped: next_business_day``, moves it to the same wall time on the next
business day (a fire already there is not doubled).

A schedule's ``start_at`` and ``end_at`` bound its fires: none before the one,
none after the other (a fire at either is one).

Each fire says when it is (an aware UTC instant), its local wall time, and what
moved it, if anything.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

from daemon.scheduling.cron import Crontab, parse_crontab

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_BUSINESS_SEARCH = 31  # days looked ahead for the next business day
ONE_DAY = timedelta(days=1)
JUST_BEFORE = timedelta(microseconds=1)
MAX_SKIPPED_RUN = 100  # matching days in a row with every fire dropped: the rules drop all

MissingTime = Literal["shift", "skip"]
RepeatedTime = Literal["once", "twice"]
IfSkipped = Literal["drop", "next_business_day"]
Holidays = Callable[[date], bool]


@dataclass(frozen=True)
class Timing:
    """What decides a schedule's fires."""

    zone: tzinfo
    cron: Crontab | None = None
    every: float | None = None  # seconds
    anchor: datetime = EPOCH
    on_missing_time: MissingTime = "shift"
    on_repeated_time: RepeatedTime = "once"
    skip_weekends: bool = False
    skip_holidays: bool = False
    if_skipped: IfSkipped = "drop"
    holidays: Holidays = field(default=lambda _day: False, compare=False)
    start: datetime | None = None  # no fire before this instant (aware)
    end: datetime | None = None  # none after it (a fire at it is one)

    @classmethod
    def crontab(cls, expression: str, zone: tzinfo, **rules: object) -> Timing:
        return cls(zone, cron=parse_crontab(expression), **rules)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Fire:
    at: datetime  # the instant, aware UTC
    local: datetime  # the wall time in the schedule's zone (fold=1: the repeated one)
    note: str | None = None  # why it is not simply the wall time the schedule names

    def __lt__(self, other: Fire) -> bool:
        return self.at < other.at


def next_fires(timing: Timing, after: datetime, count: int = 1) -> list[Fire]:
    """The next ``count`` fires strictly after ``after``."""
    out: list[Fire] = []
    for fire in fires_from(timing, after):
        out.append(fire)
        if len(out) >= count:
            break
    return out


def fires_between(timing: Timing, start: datetime, end: datetime) -> Iterator[Fire]:
    """The fires ``start < at <= end``, in order."""
    for fire in fires_from(timing, start):
        if fire.at > end:
            return
        yield fire


def fires_from(timing: Timing, after: datetime) -> Iterator[Fire]:
    """Every fire strictly after ``after``, in order: an endless iterator (a crontab
    no date matches is refused when it is read), except for a cron schedule whose
    business-day rules drop the fires of ``MAX_SKIPPED_RUN`` matching days in a row
    (a crontab of weekends with ``skip: [weekends]``): that one ends. Only the fires
    from ``timing.start`` to ``timing.end`` (both in) are fires: none before, and
    the iterator ends at the end."""
    after = after.astimezone(UTC)
    if timing.start is not None and after < timing.start:
        after = timing.start - JUST_BEFORE  # a fire at the start is one
    if timing.every is not None:
        found = _every(timing, after)
    elif timing.cron is not None:
        found = _cron(timing, after)
    else:
        return
    if timing.end is None:
        yield from found
        return
    for fire in found:
        if fire.at > timing.end:
            return
        yield fire


# --- every ----------------------------------------------------------------------------


def _every(timing: Timing, after: datetime) -> Iterator[Fire]:
    assert timing.every is not None
    step = timedelta(seconds=timing.every)
    anchor = timing.anchor.astimezone(UTC)
    n = (after - anchor) // step + 1
    while True:
        at = anchor + n * step
        n += 1
        local = at.astimezone(timing.zone)
        if _skipped(timing, local.date()) is None:
            yield Fire(at, local)


# --- cron -----------------------------------------------------------------------------


def _cron(timing: Timing, after: datetime) -> Iterator[Fire]:
    """Day by day through the days the crontab matches: each wall time made an
    instant by the DST rules; a fire on a skipped day dropped or moved to the next
    business day, where it is merged with that day's own (one fire per instant)."""
    assert timing.cron is not None
    cron = timing.cron
    back = MAX_BUSINESS_SEARCH if timing.if_skipped == "next_business_day" else 1
    local = after.astimezone(timing.zone).replace(tzinfo=None)
    start = local.date() - timedelta(days=back)  # fires moved from before come later
    moved: list[Fire] = []  # fires moved to a later business day, not yet yielded
    dropped = 0  # matching days in a row whose fires were all dropped
    for day in cron.days(start):
        earlier = [f for f in moved if f.local.date() < day]  # moved onto a day of no fires
        moved = [f for f in moved if f.local.date() >= day]
        yield from _after(sorted(earlier), after)
        arriving = [f for f in moved if f.local.date() == day]
        moved = [f for f in moved if f.local.date() != day]
        why = _skipped(timing, day)
        if why is None and not arriving and _steady(timing.zone, day):  # in wall order, lazily
            dropped = 0
            if day < local.date() and _midnight(timing.zone, day + ONE_DAY) <= after:
                continue  # every fire of the day is before the start
            times = cron.times
            first = bisect.bisect_right(times, local.time()) if day == local.date() else 0
            for wall in times[first:]:
                yield from _after(_instants(timing, day, wall), after)
            continue
        day_fires: list[Fire] = []
        target = None
        if why is not None and timing.if_skipped == "next_business_day":
            target = _next_business_day(timing, day)
        for wall in cron.times:
            for fire in _instants(timing, day, wall):
                if why is None:
                    day_fires.append(fire)
                elif target is not None:
                    moved += _move(timing, fire, target, why)
        yield from _after(sorted(day_fires + arriving), after)  # the day's own first
        dropped = dropped + 1 if why is not None and target is None else 0
        if dropped > MAX_SKIPPED_RUN and not moved:  # a crontab of weekends, skip: [weekends]
            return
    yield from _after(sorted(moved), after)


def _steady(zone: tzinfo, day: date) -> bool:
    """Whether the clocks keep one offset all day (its midnights at one offset): then
    its fires come in the order of their wall times."""
    start = datetime.combine(day, time(), zone)
    return start.utcoffset() == datetime.combine(day + ONE_DAY, time(), zone).utcoffset()


def _midnight(zone: tzinfo, day: date) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def _after(fires: list[Fire], after: datetime) -> Iterator[Fire]:
    """The fires after ``after``, in order, each instant once."""
    last: datetime | None = None
    for fire in fires:
        if fire.at > after and fire.at != last:
            last = fire.at
            yield fire


def _instants(timing: Timing, day: date, wall: time) -> list[Fire]:
    """The instants of a wall time on a day in the zone, by the DST rules."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=timing.zone, fold=0)
    second = naive.replace(tzinfo=timing.zone, fold=1)
    if first.utcoffset() == second.utcoffset():  # an ordinary time
        return [Fire(first.astimezone(UTC), first)]
    at_first, at_second = first.astimezone(UTC), second.astimezone(UTC)
    if at_first > at_second:  # the gap: the wall time does not exist that day
        if timing.on_missing_time == "skip":
            return []
        shown = first.astimezone(UTC).astimezone(timing.zone)
        note = f"{wall:%H:%M} does not exist on {day}; run at {shown:%H:%M %Z}"
        return [Fire(at_first, shown, note)]
    # the fold: the wall time happens twice
    fires = [Fire(at_first, first)]
    if timing.on_repeated_time == "twice":
        fires.append(Fire(at_second, second, f"{wall:%H:%M} again, the hour repeated"))
    return fires


# --- business days -----------------------------------------------------------------------


def _skipped(timing: Timing, day: date) -> str | None:
    """Why ``day`` is not a business day for this schedule, or None."""
    if timing.skip_weekends and day.isoweekday() >= 6:
        return "a weekend"
    if timing.skip_holidays and timing.holidays(day):
        return "a public holiday"
    return None


def _next_business_day(timing: Timing, day: date) -> date | None:
    for ahead in range(1, MAX_BUSINESS_SEARCH + 1):
        candidate = day + timedelta(days=ahead)
        if _skipped(timing, candidate) is None:
            return candidate
    return None


def _move(timing: Timing, fire: Fire, target: date, why: str) -> list[Fire]:
    wall = fire.local.replace(tzinfo=None).time()
    note = f"moved from {fire.local:%a %Y-%m-%d}, {why}"
    return [Fire(f.at, f.local, note) for f in _instants(timing, target, wall)][:1]
