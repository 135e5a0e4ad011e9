"""Crontab reading and the fire maths (``daemon.scheduling.cron``, ``.fires``), from
tables with the instant passed in: no clock is mocked. DST both ways in
Europe/Berlin and America/New_York under both policies, 29 February, month
ends, day-of-week 0 and 7, steps in the day fields, day-of-month and day-of-week
together (cronie's rule: both when either starts with ``*``, else either), ``L``,
``L-N``, ``#``, expressions that never fire, business days and holidays,
intervals on a fixed anchor. ``test_cron_oracle.py`` checks the same against
croniter and a brute-force walk over thousands of random expressions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from daemon.scheduling.cron import parse_crontab
from daemon.scheduling.fires import Timing, fires_between, next_fires

JKT = ZoneInfo("Asia/Jakarta")
BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")
# Monday 2026-11-23 10:00:30 in Jakarta.
MONDAY = datetime(2026, 11, 23, 10, 0, 30, tzinfo=JKT)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


SKIP = {"on_missing_time": "skip"}
TWICE = {"on_repeated_time": "twice"}
WEEKENDS = {"skip_weekends": True}
MOVE = {"if_skipped": "next_business_day"}


def fires(expression: str, zone: ZoneInfo, after: datetime, count: int, **rules) -> list[datetime]:
    timing = Timing.crontab(expression, zone, **rules)
    return [f.at for f in next_fires(timing, after, count)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # day-of-week 0 and 7 are Sunday, as in cron (APScheduler's own numbering has 0 = Monday)
        ("0 2 * * 0", local(JKT, 2026, 11, 29, 2, 0)),
        ("0 2 * * 7", local(JKT, 2026, 11, 29, 2, 0)),
        ("0 2 * * 1", local(JKT, 2026, 11, 30, 2, 0)),
        ("0 2 * * sun", local(JKT, 2026, 11, 29, 2, 0)),
        ("30 9 * * 1-5", local(JKT, 2026, 11, 24, 9, 30)),
        ("0 12 * * mon-fri", local(JKT, 2026, 11, 23, 12, 0)),
        # 5-7 is Friday to Sunday; 0-2 is Sunday to Tuesday
        ("0 0 * * 5-7", local(JKT, 2026, 11, 27, 0, 0)),
        ("0 0 * * 0-2", local(JKT, 2026, 11, 24, 0, 0)),
        # */2 counts from Sunday: Sun, Tue, Thu, Sat
        ("0 0 * * */2", local(JKT, 2026, 11, 24, 0, 0)),
        ("0 3 1 * *", local(JKT, 2026, 12, 1, 3, 0)),
        ("*/15 * * * *", local(JKT, 2026, 11, 23, 10, 15)),
        ("@daily", local(JKT, 2026, 11, 24, 0, 0)),
        ("@weekly", local(JKT, 2026, 11, 29, 0, 0)),
        ("@hourly", local(JKT, 2026, 11, 23, 11, 0)),
        ("@monthly", local(JKT, 2026, 12, 1, 0, 0)),
        ("@yearly", local(JKT, 2027, 1, 1, 0, 0)),
        ("0 6 1 jan,jul *", local(JKT, 2027, 1, 1, 6, 0)),
        # cron's OR: the first of the month, and every Friday
        ("0 6 1 * 5", local(JKT, 2026, 11, 27, 6, 0)),
        ("0 6 1,15 * fri", local(JKT, 2026, 11, 27, 6, 0)),
        # a restricted day-of-week with a day-of-month of *: the weekday alone
        ("0 6 * * 5", local(JKT, 2026, 11, 27, 6, 0)),
        # 29 February: the next leap year
        ("0 0 29 2 *", local(JKT, 2028, 2, 29, 0, 0)),
        # month ends: the 31st only in months that have one
        ("0 0 31 * *", local(JKT, 2026, 12, 31, 0, 0)),
        ("0 0 30 * *", local(JKT, 2026, 11, 30, 0, 0)),
    ],
)
def test_next_fire(expression: str, expected: datetime):
    assert fires(expression, JKT, MONDAY, 1) == [expected.astimezone(UTC)]


def test_day_of_month_31_skips_short_months():
    got = fires("0 0 31 * *", JKT, local(JKT, 2027, 1, 31, 1, 0), 3)
    assert [f.astimezone(JKT).date() for f in got] == [
        date(2027, 3, 31),
        date(2027, 5, 31),
        date(2027, 7, 31),
    ]


def test_the_first_and_every_monday_together():
    got = fires("0 6 1 * mon", JKT, local(JKT, 2026, 11, 28, 0, 0), 4)
    assert [f.astimezone(JKT).strftime("%a %d") for f in got] == [
        "Mon 30",
        "Tue 01",
        "Mon 07",
        "Mon 14",
    ]


# --- the day fields: steps, both fields, L, #, 5/2 --------------------------------------


def days_of(expression: str, start: str, count: int) -> list[str]:
    after = datetime.fromisoformat(start).replace(tzinfo=UTC) - timedelta(microseconds=1)
    got = fires(expression, UTC, after, count)
    return [f.strftime("%a %d %b") for f in got]


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # a step in day-of-month: the 1st, 3rd, 5th ... of each month (31 then 1 again)
        (
            "0 0 */2 * *", "2027-01-27",
            ["Wed 27 Jan", "Fri 29 Jan", "Sun 31 Jan", "Mon 01 Feb", "Wed 03 Feb"],
        ),
        ("30 6 */10 * *", "2027-01-02", ["Mon 11 Jan", "Thu 21 Jan", "Sun 31 Jan", "Mon 01 Feb"]),
        ("0 0 10-20/5 * *", "2027-01-01", ["Sun 10 Jan", "Fri 15 Jan", "Wed 20 Jan", "Wed 10 Feb"]),
        # a step in day-of-week: Sunday, Tuesday, Thursday, Saturday
        (
            "0 0 * * */2", "2027-01-04",
            ["Tue 05 Jan", "Thu 07 Jan", "Sat 09 Jan", "Sun 10 Jan", "Tue 12 Jan"],
        ),
        ("0 0 * * 1-5/2", "2027-01-04", ["Mon 04 Jan", "Wed 06 Jan", "Fri 08 Jan", "Mon 11 Jan"]),
        # N/STEP runs to the field's last value, and day-of-week's is 7 (Sunday): Fri, Sun
        ("0 0 * * 5/2", "2027-01-04", ["Fri 08 Jan", "Sun 10 Jan", "Fri 15 Jan", "Sun 17 Jan"]),
        ("0 0 * * fri-sun", "2027-01-04", ["Fri 08 Jan", "Sat 09 Jan", "Sun 10 Jan", "Fri 15 Jan"]),
        # either field starts with *: both must match (the Mondays among 1, 11, 21, 31)
        (
            "0 0 */10 * 1", "2027-01-01",
            ["Mon 11 Jan", "Mon 01 Feb", "Mon 01 Mar", "Mon 31 May", "Mon 21 Jun"],
        ),
        ("0 0 1-7 * */7", "2027-01-01", ["Sun 03 Jan", "Sun 07 Feb", "Sun 07 Mar", "Sun 04 Apr"]),
        # neither does: either may (the 1st and 15th, and the Fridays)
        ("0 0 1,15 * fri", "2027-01-01", ["Fri 01 Jan", "Fri 08 Jan", "Fri 15 Jan", "Fri 22 Jan"]),
        ("0 0 13 * 5", "2027-02-01", ["Fri 05 Feb", "Fri 12 Feb", "Sat 13 Feb", "Fri 19 Feb"]),
        # L: the last day of the month, L-2 two days before it (29 February in a leap year)
        ("0 0 L * *", "2028-01-15", ["Mon 31 Jan", "Tue 29 Feb", "Fri 31 Mar", "Sun 30 Apr"]),
        ("0 0 L-2 * *", "2028-01-15", ["Sat 29 Jan", "Sun 27 Feb", "Wed 29 Mar", "Fri 28 Apr"]),
        ("0 0 L-2 * *", "2027-02-01", ["Fri 26 Feb", "Mon 29 Mar"]),
        ("0 0 1,L * *", "2027-01-15", ["Sun 31 Jan", "Mon 01 Feb", "Sun 28 Feb", "Mon 01 Mar"]),
        ("0 0 L * 5", "2027-01-20", ["Fri 22 Jan", "Fri 29 Jan", "Sun 31 Jan", "Fri 05 Feb"]),
        # L beside 30 other days is 30 or 31 days, not every day (croniter: every day)
        ("0 0 1-29,31,L * *", "2027-03-28", ["Sun 28 Mar", "Mon 29 Mar", "Wed 31 Mar"]),
        ("0 0 1-29,31,L * *", "2027-04-28", ["Wed 28 Apr", "Thu 29 Apr", "Fri 30 Apr"]),
        # #: the first Monday, the third Friday; with a day-of-month, either
        ("0 6 * * 1#1", "2027-01-01", ["Mon 04 Jan", "Mon 01 Feb", "Mon 01 Mar", "Mon 05 Apr"]),
        ("0 6 * * fri#3,mon#1", "2027-01-01", ["Mon 04 Jan", "Fri 15 Jan", "Mon 01 Feb"]),
        ("0 6 * * 7#5", "2027-01-01", ["Sun 31 Jan", "Sun 30 May", "Sun 29 Aug", "Sun 31 Oct"]),
        ("0 6 15 * 1#1", "2027-01-01", ["Mon 04 Jan", "Fri 15 Jan", "Mon 01 Feb", "Mon 15 Feb"]),
        # names and macros
        ("0 0 1 jan-mar/2 *", "2027-01-01", ["Fri 01 Jan", "Mon 01 Mar", "Sat 01 Jan"]),
        ("@monthly", "2027-01-02", ["Mon 01 Feb", "Mon 01 Mar"]),
        ("@annually", "2027-01-02", ["Sat 01 Jan"]),
    ],
)  # fmt: skip
def test_the_day_fields(expression: str, start: str, expected: list[str]):
    assert days_of(expression, start, len(expected)) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 30 2 *",  # 30 February
        "0 0 31 2 *",
        "0 0 31 4,6,9,11 *",  # the 31st of a 30-day month
        "0 0 31 apr *",
        "0 0 30,31 feb *",
        "0 0 L-29 2 *",  # 29 days before the end of February
        "0 0 */30 2 1#5",  # the 1st or 31st of February that is its fifth Monday
    ],
)
def test_an_expression_that_never_fires_is_refused(expression: str):
    with pytest.raises(ValueError, match="it never fires"):
        parse_crontab(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 29 2 *",  # leap years
        "0 0 29 2 1",  # either: every Monday of February
        "0 0 30 2 1",
        "0 0 */30 2 *",  # the 1st of February
        "0 0 29 2 */7",  # both: 29 February on a Sunday (2032, 2060 ...)
        "0 0 L-28 2 *",  # 1 February of a leap year
        "0 0 * 2 1#5",  # a fifth Monday in February: 29 February on a Monday
    ],
)
def test_expressions_that_fire_seldom_are_accepted(expression: str):
    assert next_fires(Timing.crontab(expression, UTC), utc(2026, 1, 1), 1)


# --- DST ------------------------------------------------------------------------------
# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25 03:00 CEST ->
# 02:00 CET (01:00 UTC). America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01
# 02:00 EDT -> 01:00 EST.


@pytest.mark.parametrize(
    ("zone", "expression", "after", "rule", "expected"),
    [
        # spring forward: 02:30 does not exist that day
        (BERLIN, "30 2 * * *", utc(2026, 3, 28, 12), {}, [utc(2026, 3, 29, 1, 30)]),
        (BERLIN, "30 2 * * *", utc(2026, 3, 28, 12), SKIP, [utc(2026, 3, 30, 0, 30)]),
        (NY, "30 2 * * *", utc(2026, 3, 7, 12), {}, [utc(2026, 3, 8, 7, 30)]),
        (NY, "30 2 * * *", utc(2026, 3, 7, 12), SKIP, [utc(2026, 3, 9, 6, 30)]),
        # fall back: 02:30 (Berlin) and 01:30 (New York) happen twice
        (
            BERLIN, "30 2 * * *", utc(2026, 10, 24, 12), {},
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            BERLIN, "30 2 * * *", utc(2026, 10, 24, 12), TWICE,
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)],
        ),
        (
            NY, "30 1 * * *", utc(2026, 10, 31, 12), {},
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        (
            NY, "30 1 * * *", utc(2026, 10, 31, 12), TWICE,
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)],
        ),
        # hourly across both changes: once an hour of real time, as the clock allows
        (
            BERLIN, "0 * * * *", utc(2026, 3, 29, 0, 30), {},
            [utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
        ),
        (
            BERLIN, "0 * * * *", utc(2026, 10, 24, 23, 30), TWICE,
            [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)],
        ),
        (
            BERLIN, "0 * * * *", utc(2026, 10, 24, 23, 30), {},
            [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2)],
        ),
    ],
)  # fmt: skip
def test_dst(zone, expression, after, rule, expected):
    assert fires(expression, zone, after, len(expected), **rule) == expected


def test_a_shifted_fire_says_so():
    timing = Timing.crontab("30 2 * * *", BERLIN)
    [fire] = next_fires(timing, utc(2026, 3, 28, 12))
    assert fire.note == "02:30 does not exist on 2026-03-29; run at 03:30 CEST"
    assert fire.local.hour == 3
    timing = Timing.crontab("30 2 * * *", BERLIN, on_repeated_time="twice")
    first, second = next_fires(timing, utc(2026, 10, 24, 12), 2)
    assert (first.local.fold, second.local.fold) == (0, 1)
    assert first.note is None and second.note == "02:30 again, the hour repeated"


# --- business days -------------------------------------------------------------------

BERLIN_HOLIDAYS = {date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 1)}


def holiday(day: date) -> bool:
    return day in BERLIN_HOLIDAYS


@pytest.mark.parametrize(
    ("expression", "after", "rules", "expected"),
    [
        # the monthly export: 1 August 2026 is a Saturday
        ("0 6 1 * *", local(BERLIN, 2026, 7, 15), WEEKENDS, [local(BERLIN, 2026, 9, 1, 6)]),
        (
            "0 6 1 * *", local(BERLIN, 2026, 7, 15),
            WEEKENDS | MOVE,
            [local(BERLIN, 2026, 8, 3, 6), local(BERLIN, 2026, 9, 1, 6)],
        ),
        # 1 January 2027 is a holiday (a Friday): the next business day is Monday the 4th
        (
            "0 6 1 * *", local(BERLIN, 2026, 12, 15),
            {"skip_weekends": True, "skip_holidays": True, "if_skipped": "next_business_day"},
            [local(BERLIN, 2027, 1, 4, 6)],
        ),
        (
            "0 6 * * *", local(BERLIN, 2026, 12, 24, 7),
            {"skip_weekends": True, "skip_holidays": True},
            [local(BERLIN, 2026, 12, 28, 6)],
        ),
        # a move onto a day that fires anyway is one fire, not two
        (
            "0 6 * * *", local(BERLIN, 2026, 12, 24, 7),
            {"skip_holidays": True, "if_skipped": "next_business_day"},
            [local(BERLIN, 2026, 12, 27, 6), local(BERLIN, 2026, 12, 28, 6)],
        ),
    ],
)  # fmt: skip
def test_business_days(expression, after, rules, expected):
    got = fires(expression, BERLIN, after, len(expected), holidays=holiday, **rules)
    assert got == [e.astimezone(UTC) for e in expected]


def test_rules_that_drop_every_fire_end_the_search():
    """A crontab of weekends with weekends skipped, or of a day that is always a holiday
    with holidays skipped: no fire, and the search ends (the YAML check refuses the
    first; a calendar is known only to the scheduler)."""
    weekends = Timing.crontab("0 8 * * sat,sun", BERLIN, skip_weekends=True)
    assert next_fires(weekends, local(BERLIN, 2026, 1, 1), 1) == []
    christmas = Timing.crontab(
        "0 6 25 12 *", BERLIN, skip_holidays=True, holidays=lambda d: (d.month, d.day) == (12, 25)
    )
    assert next_fires(christmas, local(BERLIN, 2026, 1, 1), 1) == []
    moved = Timing.crontab("0 8 * * sat,sun", BERLIN, skip_weekends=True, **MOVE)
    got = next_fires(moved, local(BERLIN, 2027, 1, 1), 2)
    assert [f.local.strftime("%a %d") for f in got] == ["Mon 04", "Mon 11"]  # Sat's and Sun's


def test_a_moved_fire_says_from_where():
    timing = Timing.crontab("0 6 1 * *", BERLIN, skip_weekends=True, if_skipped="next_business_day")
    [fire] = next_fires(timing, local(BERLIN, 2026, 8, 2))  # Sunday: after the skipped Saturday
    assert fire.local == local(BERLIN, 2026, 8, 3, 6)
    assert fire.note == "moved from Sat 2026-08-01, a weekend"


# --- every ------------------------------------------------------------------------------


def test_every_fires_on_multiples_of_the_interval_from_the_anchor():
    timing = Timing(JKT, every=300.0)
    got = [f.at for f in next_fires(timing, utc(2026, 11, 23, 10, 2, 30), 3)]
    assert got == [utc(2026, 11, 23, 10, 5), utc(2026, 11, 23, 10, 10), utc(2026, 11, 23, 10, 15)]
    anchored = Timing(JKT, every=3600.0, anchor=utc(2026, 1, 1, 0, 20))
    assert next_fires(anchored, utc(2026, 11, 23, 10, 2))[0].at == utc(2026, 11, 23, 10, 20)


def test_every_ignores_dst_and_counts_real_time():
    timing = Timing(BERLIN, every=3600.0)
    got = list(fires_between(timing, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30)))
    assert [f.at for f in got] == [utc(2026, 10, 25, h) for h in (0, 1, 2)]
    assert [f.local.strftime("%H %Z") for f in got] == ["02 CEST", "02 CET", "03 CET"]


def test_every_second_between_two_instants():
    timing = Timing(UTC, every=1.0)
    got = list(fires_between(timing, utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 5)))
    assert [f.at.second for f in got] == [1, 2, 3, 4, 5]  # start excluded, end included


def test_every_skips_weekends():
    timing = Timing(BERLIN, every=86400.0, anchor=utc(2026, 1, 1, 5), skip_weekends=True)
    got = next_fires(timing, local(BERLIN, 2026, 11, 27, 7), 2)  # a Friday
    assert [f.local.strftime("%a") for f in got] == ["Mon", "Tue"]


# --- reading crontabs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 2 * *", "expected 5 fields"),
        ("0 2 * * * *", "expected 5 fields"),
        ("0 2 * * 8", "day-of-week '8' is not 0-7"),
        ("0 2 * * 5-1", "runs backwards"),
        ("0 2 * * funday", "day-of-week 'funday'"),
        ("61 * * * *", "minute '61' is not 0-59"),
        ("0 25 * * *", "hour '25' is not 0-23"),
        ("0 0 32 * *", "day-of-month '32' is not 1-31"),
        ("0 0 * 13 *", "month '13' is not 1-12"),
        ("*/0 * * * *", "step"),
        ("@reboot", "unknown macro"),
        ("1-2-3 * * * *", "invalid minute part"),
        ("", "expected 5 fields"),
        ("0 0 ? * *", "Quartz"),
        ("0 0 15W * *", "nearest weekday"),
        ("H 0 * * *", "hashed"),
        ("0 0 * * 5L", "L is read in day-of-month only"),
        ("0 0 L/2 * *", "L stands alone or as L-N"),
        ("0 0 L-31 * *", "L-N takes N from 1 to 30"),
        ("0 0 * * 1#6", "#N takes N from 1 to 5"),
        ("0 0 * * 1-5#1", "# follows one day"),
        ("0 0 * * 1#1,5", "cannot hold plain days"),
        ("0 0 * * sun-sat-mon", "invalid day-of-week part"),
        ("0 0 * * 6-1", "runs backwards"),
        ("0 0 1 0 *", "month '0' is not 1-12"),
        ("0 0 0 * *", "day-of-month '0' is not 1-31"),
        ("0 0 * * 1\u00a02", "invalid day-of-week part"),  # a no-break space is no separator
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_expressions(expression: str, reason: str):
    with pytest.raises(ValueError, match=reason):
        parse_crontab(expression)


def test_steps_and_lists():
    cron = parse_crontab("5-20/5,59 */6 * * *")
    assert sorted(cron.minutes) == [5, 10, 15, 20, 59]
    assert sorted(cron.hours) == [0, 6, 12, 18]
    assert cron.times[:3] == (time(0, 5), time(0, 10), time(0, 15))
    sunday = date(2027, 1, 3)
    assert parse_crontab("0 0 * * 7").matches(sunday)
    week = [sunday + timedelta(days=i) for i in range(7)]
    on = [d.strftime("%a") for d in week if parse_crontab("0 0 * * 1/2").matches(d)]
    assert on == ["Sun", "Mon", "Wed", "Fri"]  # 1-7/2: 7 is Sunday


def test_the_day_rule_is_read_from_the_fields_as_written():
    assert not parse_crontab("0 0 */10 * 1").either  # a field starts with *: both
    assert not parse_crontab("0 0 1 * *").either
    assert parse_crontab("0 0 1-31 * 1").either  # every day, written out: either
    assert parse_crontab("0 0 L * 1#1").either


def test_the_horizon_is_long_enough_for_29_february():
    assert next_fires(Timing.crontab("0 0 29 2 *", UTC), utc(2097, 3, 1), 1)[0].at == utc(
        2104, 2, 29
    )


def test_every_day_of_a_year_in_a_zone_with_dst_is_one_fire():
    timing = Timing.crontab("30 2 * * *", BERLIN)
    got = list(fires_between(timing, utc(2025, 12, 31, 12), utc(2026, 12, 31, 12)))
    assert len(got) == 365
    assert all(b.at - a.at >= timedelta(hours=23) for a, b in pairwise(got))


def test_croniter_is_imported_when_the_first_expression_is_read():
    """The scheduling package stays cheap to import (the CLI's parser, the config
    models): croniter and dateutil come with the first crontab read."""
    import json
    import subprocess
    import sys

    probe = (
        "import sys, json, daemon.scheduling.fires, daemon.scheduling.cron as c\n"
        "before = sorted(m.split('.')[0] for m in sys.modules)\n"
        "c.parse_crontab('0 6 * * *')\n"
        "print(json.dumps([before, sorted(m.split('.')[0] for m in sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before, after = json.loads(out.stdout)
    assert not {"croniter", "dateutil"} & set(before)
    assert {"croniter", "dateutil"} <= set(after)
