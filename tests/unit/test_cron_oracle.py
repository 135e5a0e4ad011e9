"""The cron maths against two oracles, over thousands of random expressions.

Random crontab lines (steps, ranges, lists, names, both day fields, ``L``,
``L-N``, ``#``, macros) are read by ``daemon.scheduling`` and their fires,
from random instants (most of them just before a change of the clocks), in zones
without DST (UTC, Asia/Jakarta) and with it (Europe/Berlin, America/New_York,
Australia/Lord_Howe's half hour), under each DST policy, compared with:

- **a brute-force walk** written here from the dialect's table alone
  (``docs/scheduler.md``): every day is tested against the fields with cronie's
  day rule, every minute of a matching day against the hour and minute fields;
  each wall time is then made instants by the DST policy, found from the zone's
  offsets (scanned here, not asked of the code under test): a wall time is the
  instants ``u`` with ``u + offset(u) == wall``; none is the gap, two the fold.
  Every difference is a failure.
- **croniter**, given the expression as written and naive wall-clock times: its
  wall times from a random start, and, from the starts near a change of the
  clocks, its wall times made instants by the same policy. A difference is a
  failure unless the expression has one of the documented differences
  (``DIFFERENCES``), each of which is shown on an expression of its own.

Expressions that are refused as never firing are checked by the brute force
over a whole cycle of the calendar (400 years).

Seeded and reproducible: ``OUTBOXD_CRON_ORACLE_SEED`` (default below) and
``OUTBOXD_CRON_ORACLE_COUNT`` (expressions; 2,000 by default, a few seconds).
A larger run: ``OUTBOXD_CRON_ORACLE_COUNT=30000 pytest tests/unit/test_cron_oracle.py``.
"""

from __future__ import annotations

import bisect
import calendar
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from daemon.scheduling.cron import parse_crontab
from daemon.scheduling.fires import Timing, fires_from

SEED = int(os.environ.get("OUTBOXD_CRON_ORACLE_SEED", "20260329"))
COUNT = int(os.environ.get("OUTBOXD_CRON_ORACLE_COUNT", "2000"))
ZONES = ("UTC", "Asia/Jakarta", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
POLICIES = (("shift", "once"), ("skip", "twice"), ("shift", "twice"), ("skip", "once"))
COMBOS = 2  # zone, start and policy drawn for each expression
MIN_FIRES = 6  # fires compared at least ...
WINDOW = timedelta(days=2)  # ... or all those of this window after the start,
MAX_FIRES = 24  # ... at most this many
WALLS = 8  # wall times compared with croniter's, from a naive start
SCAN = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))  # zone offsets known
MINUTE = timedelta(minutes=1)

# The documented differences from croniter (docs/scheduler.md, "croniter"): the name, and
# whether an expression has it. A difference from croniter not explained by one is a failure.
DIFFERENCES: dict[str, Callable[[list[str]], bool]] = {
    # cronie's day rule reads the text: either when neither day field starts with *.
    # croniter reads the values: */2 is restricted (either), and a field naming every
    # value is * when the other has a * in it (1-0 beside */10: both)
    "the day rule read from the values": lambda f: _cronie_either(f) != _croniter_either(f),
    # N/STEP in day-of-week runs to 7 (Sunday) here, to 6 in croniter
    "N/STEP in day-of-week": lambda f: any(
        "/" in item and "-" not in item and not item.startswith("*") for item in f[4].split(",")
    ),
    # D#N with a restricted day-of-month: either, by the day rule; croniter intersects them
    "D#N with a restricted day-of-month": lambda f: "#" in f[4] and not f[2].startswith("*"),
    # L-N: croniter does not read it
    "L-N": lambda f: "l-" in f[2],
    # L in a list of 30 other days: croniter counts it as a 31st and reads every day
    "L beside 30 other days": lambda f: "l" in f[2].split(",") and _croniter_days(f) == ["*"],
    # an equal range 5-5 is 5; croniter reads it as the whole field
    "an equal range A-A": lambda f: any(
        _equal_range(item) for field in f for item in field.split(",")
    ),
}
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cronie_either(f: list[str]) -> bool:
    return not f[2].startswith("*") and not f[4].startswith("*")


def _croniter_either(f: list[str]) -> bool:
    try:
        expanded, _ = croniter.expand(" ".join(f))
    except CroniterBadCronError:
        return _cronie_either(f)  # not read by croniter: another difference
    return expanded[2] != ["*"] and expanded[4] != ["*"]


def _croniter_days(f: list[str]) -> list[object] | None:
    try:
        return list(croniter.expand(" ".join(f))[0][2])
    except CroniterBadCronError:
        return None


def _equal_range(item: str) -> bool:
    base = item.split("/")[0]
    if "-" not in base or base.startswith("l"):
        return False
    low, high = base.split("-")
    return _any_number(low) == _any_number(high)


def _any_number(token: str) -> int:
    if token in MONTH_NAMES:
        return MONTH_NAMES.index(token) + 1
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    return int(token)


# --- the dialect, read here from its table -----------------------------------------------


@dataclass(frozen=True)
class Reading:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    last: bool  # L
    before_last: frozenset[int]  # L-N
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    nth: frozenset[tuple[int, int]]  # (weekday, N) of D#N
    both: bool  # a day field starts with *: a day must match both

    def day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        last = calendar.monthrange(d.year, d.month)[1]
        dom = (
            d.day in self.days or (self.last and d.day == last) or last - d.day in self.before_last
        )
        weekday = d.isoweekday() % 7
        nth = (weekday, (d.day - 1) // 7 + 1)  # the Nth such weekday of the month
        dow = nth in self.nth if self.nth else weekday in self.weekdays
        return (dom and dow) if self.both else (dom or dow)

    def walls(self, d: date) -> Iterator[datetime]:
        """Every minute of the day, those the fields name."""
        if not self.day(d):
            return
        for hour in range(24):
            if hour not in self.hours:
                continue
            for minute in range(60):
                if minute in self.minutes:
                    yield datetime.combine(d, time(hour, minute))


def read(expression: str) -> Reading:
    fields = MACROS.get(expression.lower(), expression.lower()).split()

    def values(text: str, low: int, high: int, names: tuple[str, ...], first: int) -> set[int]:
        out: set[int] = set()
        for item in text.split(","):
            base, slash, step = item.partition("/")

            def number(token: str) -> int:
                return names.index(token) + first if token in names else int(token)

            if base == "*":
                a, b = low, high
            elif "-" in base:
                a, b = (number(t) for t in base.split("-"))
                if high == 7 and b == 0 and a > 0:
                    b = 7  # fri-sun
            else:
                a = number(base)
                b = high if slash else a
            out.update(range(a, b + 1, int(step) if slash else 1))
        return out

    days: set[int] = set()
    last, before = False, set()
    for item in fields[2].split(","):
        if item == "l":
            last = True
        elif item.startswith("l-"):
            before.add(int(item[2:]))
        else:
            days |= values(item, 1, 31, (), 0)
    nth = {(int(d) % 7 if d.isdigit() else DAY_NAMES.index(d), int(n)) for d, n in (
        item.split("#") for item in fields[4].split(",") if "#" in item
    )}  # fmt: skip
    weekdays = set() if nth else {d % 7 for d in values(fields[4], 0, 7, DAY_NAMES, 0)}
    return Reading(
        frozenset(values(fields[0], 0, 59, (), 0)),
        frozenset(values(fields[1], 0, 23, (), 0)),
        frozenset(days), last, frozenset(before),
        frozenset(values(fields[3], 1, 12, MONTH_NAMES, 1)),
        frozenset(weekdays), frozenset(nth),
        fields[2].startswith("*") or fields[4].startswith("*"),
    )  # fmt: skip


# --- the zone's offsets and the DST policy ----------------------------------------------


@cache
def offsets(zone_name: str) -> tuple[list[datetime], list[timedelta]]:
    """The instants the zone's offset changes (to the minute) and the offset from each."""
    zone = ZoneInfo(zone_name)

    def offset(u: datetime) -> timedelta:
        found = u.astimezone(zone).utcoffset()
        assert found is not None
        return found

    starts, values = [SCAN[0] - timedelta(days=1)], [offset(SCAN[0])]
    u = SCAN[0]
    while u < SCAN[1]:
        step = u + timedelta(days=7)  # these zones change their clocks months apart
        if offset(step) != values[-1]:
            low, high = u, step  # the change is in (low, high]: halve it down to the minute
            while high - low > MINUTE:
                mid = (low + (high - low) / 2).replace(second=0, microsecond=0)
                low, high = (mid, high) if offset(mid) == values[-1] else (low, mid)
            starts.append(high)
            values.append(offset(high))
        u = step
    return starts, values


def offset_at(zone_name: str, u: datetime) -> timedelta:
    starts, values = offsets(zone_name)
    return values[bisect.bisect_right(starts, u) - 1]


def instants(zone_name: str, wall: datetime, missing: str, repeated: str) -> list[datetime]:
    """The instants of a wall time by the DST policy: the instants u with u + offset(u) ==
    wall; none: the gap (``shift``: as the clock would have shown it without the jump,
    at the offset before it; ``skip``: none); two: the fold (``once``: the first;
    ``twice``: both)."""
    as_utc = wall.replace(tzinfo=UTC)
    starts, values = offsets(zone_name)
    around = range(bisect.bisect_right(starts, as_utc - 2 * DAY) - 1,
                   bisect.bisect_right(starts, as_utc + 2 * DAY))  # fmt: skip
    found = sorted(
        u for o in {values[i] for i in around} if offset_at(zone_name, u := as_utc - o) == o
    )
    if len(found) == 2:
        return found if repeated == "twice" else found[:1]
    if found:
        return found
    if missing == "skip":
        return []
    [before] = [
        values[i - 1]
        for i in around
        if i > 0 and starts[i] + values[i - 1] <= as_utc < starts[i] + values[i]
    ]
    return [as_utc - before]


DAY = timedelta(days=1)


# --- random expressions ----------------------------------------------------------------


def expression(rng: random.Random) -> str:
    if rng.random() < 0.03:
        macro = rng.choice(sorted(MACROS))
        return macro.upper() if rng.random() < 0.2 else macro
    minute = field(rng, 0, 59, (), star=0.08, steps=(5, 10, 15, 20, 30, 45))
    hour = field(rng, 0, 23, (), star=0.15, steps=(2, 3, 4, 6, 8, 12))
    dom = month_days(rng)
    month = field(rng, 1, 12, MONTH_NAMES, star=0.6, steps=(2, 3, 4, 6), first=1)
    dow = weekdays(rng)
    text = " ".join((minute, hour, dom, month, dow))
    return text.upper() if rng.random() < 0.1 else text  # names and L in any case


def field(
    rng: random.Random, low: int, high: int, names: tuple[str, ...], star: float,
    steps: tuple[int, ...], first: int = 0, items: int = 3,
) -> str:  # fmt: skip
    if rng.random() < star:
        return "*"
    parts = [item(rng, low, high, names, steps, first) for _ in range(rng.randint(1, items))]
    return ",".join(parts)


def item(
    rng: random.Random, low: int, high: int, names: tuple[str, ...], steps: tuple[int, ...],
    first: int = 0,
) -> str:  # fmt: skip
    def value(v: int) -> str:
        if names and rng.random() < 0.4 and 0 <= v - first < len(names):
            return names[v - first]
        return str(v)

    shape = rng.random()
    a = rng.randint(low, high)
    if shape < 0.35:
        return value(a)
    if shape < 0.5:
        return f"*/{rng.choice((*steps, 1, 7))}"
    if shape < 0.6:
        return f"{value(a)}/{rng.choice((*steps, 1, 2))}"
    b = a if rng.random() < 0.05 else rng.randint(a, high)
    text = f"{value(a)}-{value(b)}"
    return text + (f"/{rng.choice((*steps, 2))}" if rng.random() < 0.35 else "")


def month_days(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return "*"
    parts = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.12:
            parts.append("l")
        elif r < 0.2:
            parts.append(f"l-{rng.randint(1, 30)}")
        else:
            parts.append(item(rng, 1, 31, (), (2, 3, 5, 7, 10, 15)))
    return ",".join(parts)


def weekdays(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return "*"
    if r < 0.55:  # D#N items
        picks = {(rng.randint(0, 7), rng.randint(1, 5)) for _ in range(rng.randint(1, 2))}
        return ",".join(
            f"{DAY_NAMES[d % 7] if rng.random() < 0.4 else d}#{n}" for d, n in sorted(picks)
        )
    if r < 0.62:  # to Sunday: x-7, x-0, x-sun
        a = rng.randint(1, 6)
        end = rng.choice(("7", "0", "sun"))
        return f"{a}-{end}" + (f"/{rng.randint(1, 3)}" if rng.random() < 0.4 else "")
    return field(rng, 0, 7, DAY_NAMES, star=0.0, steps=(2, 3, 4), items=2)


# --- the three readings ----------------------------------------------------------------


def ours(timing: Timing, start: datetime) -> list[datetime]:
    out: list[datetime] = []
    for fire in fires_from(timing, start):
        if len(out) >= MAX_FIRES or (len(out) >= MIN_FIRES and fire.at > start + WINDOW):
            break
        if fire.at >= SCAN[1]:
            break
        out.append(fire.at)
    return out


def resolved(
    walls: Iterator[datetime], zone: str, start: datetime, count: int, policy: tuple[str, str]
) -> list[datetime]:
    """The first ``count`` instants after ``start`` of wall times given in order (from
    a few hours before the start's, so a repeated hour's second pass is in), each
    instant once (a shifted wall time may land on one the clock shows anyway)."""
    found: list[datetime] = []
    latest = max(offsets(zone)[1])
    for wall in walls:
        # in order: a wall past the count-th instant by more than the zone's largest
        # offset has no instant before it
        if len(found) >= count and wall.replace(tzinfo=UTC) - latest > found[count - 1]:
            break
        for u in instants(zone, wall, *policy):
            if u > start and u not in found:
                bisect.insort(found, u)
    return found[:count]


def brute_walls(reading: Reading, first: date) -> Iterator[datetime]:
    day = first
    while day.year < SCAN[1].year:
        if reading.day(day):
            yield from reading.walls(day)
        day += DAY


def croniter_walls(expression: str, start: datetime) -> Iterator[datetime]:
    walk = croniter(expression, start)
    while True:
        try:
            yield walk.get_next(datetime)
        except CroniterBadDateError:
            return


@dataclass
class Tally:
    differences: Counter[str]
    failures: list[str]
    refused: int = 0
    compared: int = 0
    fires: int = 0

    def fail(self, text: str) -> None:
        self.failures.append(text)


def check(expression: str, rng: random.Random, tally: Tally) -> None:
    reading = read(expression)
    try:
        cron = parse_crontab(expression)
    except ValueError as exc:
        if "never fires" not in str(exc):
            tally.fail(f"{expression!r}: refused: {exc}")
            return
        tally.refused += 1
        cycle = date(2000, 1, 1)
        if any(reading.day(cycle + timedelta(days=i)) for i in range(146_097)):
            tally.fail(f"{expression!r}: refused as never firing, but a day matches")
        return
    fields = MACROS.get(expression.lower(), expression.lower()).split()
    documented = [name for name, has in DIFFERENCES.items() if has(fields)]

    # wall clock: ours, croniter's, the brute force's, from a naive start
    naive = datetime(rng.randint(2020, 2035), rng.randint(1, 12), rng.randint(1, 28),
                     rng.randint(0, 23), rng.randint(0, 59))  # fmt: skip
    mine = list(islice(_walls(cron, naive), WALLS))
    brute = list(islice((w for w in brute_walls(reading, naive.date()) if w > naive), WALLS))
    if mine != brute:
        tally.fail(f"{expression!r} from {naive}: walls {mine[:4]} ≠ brute force {brute[:4]}")
    try:
        theirs = list(islice(croniter_walls(expression, naive), WALLS))
    except CroniterBadCronError:
        theirs = None
    if theirs != mine:
        if not documented:
            tally.fail(f"{expression!r} from {naive}: walls {mine[:4]} ≠ croniter {theirs!s:.120}")
        for name in documented:
            tally.differences[name] += 1

    # instants: a zone, a start (often just before a change of its clocks), a policy
    for _ in range(COMBOS):
        zone = rng.choice(ZONES)
        policy = rng.choice(POLICIES)
        start = _start(rng, zone)
        timing = Timing.crontab(
            expression, ZoneInfo(zone), on_missing_time=policy[0], on_repeated_time=policy[1]
        )
        got = ours(timing, start)
        local = start.astimezone(ZoneInfo(zone)).replace(tzinfo=None) - timedelta(hours=3)
        expected = resolved(brute_walls(reading, local.date()), zone, start, len(got), policy)
        where = f"{expression!r} in {zone} from {start:%Y-%m-%d %H:%M}Z, {'/'.join(policy)}"
        if got != expected:
            tally.fail(f"{where}: {_diff(got, expected)} (brute force)")
        near = any(abs(c - start) < WINDOW for c in offsets(zone)[0][1:])
        if theirs is not None and not documented and near:  # where the DST policy matters
            walls = (w for w in croniter_walls(expression, local) if w > local)
            by_croniter = resolved(walls, zone, start, len(got), policy)
            if got != by_croniter:
                tally.fail(f"{where}: {_diff(got, by_croniter)} (croniter)")
        tally.compared += 1
        tally.fires += len(got)


def _walls(cron, naive: datetime) -> Iterator[datetime]:
    for day in cron.days(naive.date()):
        for t in cron.times:
            wall = datetime.combine(day, t)
            if wall > naive:
                yield wall


def _start(rng: random.Random, zone: str) -> datetime:
    changes = [s for s in offsets(zone)[0][1:] if s.year < 2036]
    r = rng.random()
    if changes and r < 0.7:  # before a change of the clocks: by minutes, hours or a day
        change = rng.choice(changes)
        before = rng.randint(1, 60 if r < 0.3 else 360 if r < 0.55 else 1440)
        return change - timedelta(minutes=before)
    return datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 16 * 525_600))


def _diff(got: list[datetime], expected: list[datetime]) -> str:
    for i, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            return f"fire {i}: {a:%Y-%m-%d %H:%M}Z ≠ {b:%Y-%m-%d %H:%M}Z"
    return f"{len(got)} fires ≠ {len(expected)}"


@pytest.mark.slow  # half a minute of CPU
@pytest.mark.timeout(max(300, COUNT // 20))  # a larger run takes longer
def test_random_expressions_against_croniter_and_a_brute_force_walk():
    rng = random.Random(SEED)
    tally = Tally(Counter(), [])
    for _ in range(COUNT):
        check(expression(rng), rng, tally)
    shown = "\n".join(tally.failures[:20])
    assert not tally.failures, (
        f"{len(tally.failures)} of {COUNT} expressions differ (seed {SEED}):\n{shown}"
    )
    assert tally.compared >= COUNT * COMBOS * 0.9
    assert set(tally.differences) <= set(DIFFERENCES)  # each shown by the test below


@pytest.mark.parametrize(
    ("expression", "difference"),
    [
        ("0 0 */10 * 1", "the day rule read from the values"),
        ("0 0 1,*/10 * 1-0", "the day rule read from the values"),
        ("0 0 * * 5/2", "N/STEP in day-of-week"),
        ("0 0 1 * 1#1", "D#N with a restricted day-of-month"),
        ("0 0 L-2 * *", "L-N"),
        ("0 0 * * 1-1", "an equal range A-A"),
        ("0 0 1-29,31,L * *", "L beside 30 other days"),
    ],
)
def test_each_documented_difference_is_one(expression: str, difference: str):
    """What each documented difference is, shown on one expression: croniter's reading
    differs from ours, and the brute force agrees with ours."""
    fields = expression.lower().split()
    assert [name for name, has in DIFFERENCES.items() if has(fields)] == [difference]
    start = datetime(2027, 1, 25)
    mine = list(islice(_walls(parse_crontab(expression), start), 8))
    assert (
        mine
        == [w for w in islice(brute_walls(read(expression), start.date()), 50) if w > start][:8]
    )
    try:
        theirs = list(islice(croniter_walls(expression, start), 8))
    except CroniterBadCronError:
        theirs = None
    assert theirs != mine
