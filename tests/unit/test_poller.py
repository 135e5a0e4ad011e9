"""The poller's pure parts and the Khanza source's value handling, from tables."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.config.errors import ConfigError
from daemon.config.loader import parse_config
from daemon.roles.poller import next_delay
from daemon.sources.base import SourceError
from daemon.sources.khanza.reader import connect_args, describe, local_pair, local_time
from daemon.sources.khanza.source import cursor_date, cursor_value, poll_window

JAKARTA = ZoneInfo("Asia/Jakarta")
MAKASSAR = ZoneInfo("Asia/Makassar")
NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # 10:00 WIB, 11:00 WITA
TODAY = date(2026, 11, 23)


def cursor(day: str) -> str:
    return json.dumps({"date": day, "polled_at": "2026-11-22T16:00:00+00:00"})


@pytest.mark.parametrize(
    ("now", "zone", "lookback", "stored", "window"),
    [
        (NOW, JAKARTA, 0, None, (TODAY, TODAY)),
        (NOW, JAKARTA, 1, None, (TODAY - timedelta(days=1), TODAY)),
        (NOW, JAKARTA, 0, cursor("2026-11-23"), (TODAY, TODAY)),
        # the date changed since the last poll: yesterday is read once more
        (NOW, JAKARTA, 0, cursor("2026-11-22"), (date(2026, 11, 22), TODAY)),
        # down for days: back to the cursor, at most a week
        (NOW, JAKARTA, 0, cursor("2026-11-19"), (date(2026, 11, 19), TODAY)),
        (NOW, JAKARTA, 0, cursor("2026-10-01"), (date(2026, 11, 16), TODAY)),
        # a cursor it cannot read is no cursor
        (NOW, JAKARTA, 0, "garbage", (TODAY, TODAY)),
        # "today" is the hospital's: 16:30 UTC is already tomorrow in Jakarta (23:30 +7)…
        (
            datetime(2026, 11, 23, 16, 30, tzinfo=UTC),
            JAKARTA,
            0,
            None,
            (TODAY, TODAY),
        ),
        (
            datetime(2026, 11, 23, 17, 30, tzinfo=UTC),
            JAKARTA,
            0,
            None,
            (date(2026, 11, 24), date(2026, 11, 24)),
        ),
        # …and an hour earlier in Makassar
        (
            datetime(2026, 11, 23, 16, 30, tzinfo=UTC),
            MAKASSAR,
            0,
            None,
            (date(2026, 11, 24), date(2026, 11, 24)),
        ),
    ],
)
def test_poll_window(now, zone, lookback, stored, window):
    assert poll_window(now, zone, lookback, stored) == window


def test_cursor_round_trip():
    value = cursor_value(TODAY, NOW.astimezone(JAKARTA))
    assert json.loads(value) == {"date": "2026-11-23", "polled_at": "2026-11-23T03:00:00+00:00"}
    assert cursor_date(value) == TODAY
    assert cursor_date(None) is None and cursor_date('{"x": 1}') is None


@pytest.mark.parametrize(
    ("failures", "rand", "delay"),
    [
        (0, 0.5, 30.0),  # the interval
        (0, 0.0, 27.0),  # minus 10 %
        (0, 1.0, 33.0),  # plus 10 %
        (1, 0.5, 30.0),  # the first failure: the interval
        (2, 0.5, 60.0),  # then doubling
        (3, 0.5, 120.0),
        (5, 0.5, 300.0),  # up to max_backoff
        (60, 0.5, 300.0),
    ],
)
def test_next_delay(failures, rand, delay):
    assert next_delay(30.0, 0.1, failures, 300.0, lambda: rand) == pytest.approx(delay)


def test_next_delay_when_max_backoff_is_below_the_interval():
    assert next_delay(600.0, 0.0, 4, 300.0) == 600.0


# --- Khanza values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 23, 8, 5, 7), datetime(2026, 11, 23, 8, 5, 7, tzinfo=JAKARTA)),
        ("2026-11-23 08:05:07", datetime(2026, 11, 23, 8, 5, 7, tzinfo=JAKARTA)),
        (b"2026-11-23 08:05:07", datetime(2026, 11, 23, 8, 5, 7, tzinfo=JAKARTA)),
        (datetime(2026, 11, 23, 0, 0), datetime(2026, 11, 23, 0, 0, tzinfo=JAKARTA)),
        ("0000-00-00 00:00:00", None),  # PyMySQL's zero DATETIME
        ("0000-00-00", None),
        ("2026-00-10 10:00:00", None),  # invalid, as PyMySQL passes it through
        ("2026-11-23", None),  # a date alone is no time of day
        (date(2026, 11, 23), None),
        (None, None),
        ("", None),
        (12, None),
    ],
)
def test_local_time(value, expected):
    found = local_time(value, JAKARTA)
    assert found == expected
    if found is not None:
        assert found.tzinfo is JAKARTA


@pytest.mark.parametrize(
    ("day", "clock", "expected"),
    [
        (date(2026, 11, 23), timedelta(hours=8, minutes=5), datetime(2026, 11, 23, 8, 5)),
        (date(2026, 11, 23), time(8, 5, 30), datetime(2026, 11, 23, 8, 5, 30)),
        ("2026-11-23", "08:05:00", datetime(2026, 11, 23, 8, 5)),
        ("0000-00-00", timedelta(hours=8), None),  # zero date
        (date(2026, 11, 23), timedelta(0), None),  # zero TIME: "not yet"
        (date(2026, 11, 23), "00:00:00", None),
        (date(2026, 11, 23), None, None),
        (None, timedelta(hours=8), None),
        (date(2026, 11, 23), timedelta(hours=25), None),  # TIME beyond a day
        (date(2026, 11, 23), timedelta(hours=-1), None),
    ],
)
def test_local_pair(day, clock, expected):
    found = local_pair(day, clock, MAKASSAR)
    assert found == (None if expected is None else expected.replace(tzinfo=MAKASSAR))


@pytest.mark.parametrize(
    ("dsn", "args"),
    [
        (
            "mysql://khanza:s%40cret@10.0.0.5:3307/sik",
            {"host": "10.0.0.5", "port": 3307, "user": "khanza", "password": "s@cret"},
        ),
        ("mysql://root@127.0.0.1/sik", {"host": "127.0.0.1", "port": 3306, "password": ""}),
        ("mariadb://u:p@db/sik?charset=latin1", {"host": "db", "charset": "latin1"}),
    ],
)
def test_connect_args(dsn, args):
    found = connect_args(dsn)
    assert found["database"] == "sik"
    assert {k: found[k] for k in args} == args


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://u:p@h/db", "dsn: expected mysql://"),
        ("mysql://u:p@h", "dsn: no database name"),
        ("mysql://u:p@h:99999/db", "dsn: cannot read it"),
        ("mysql://u:p@h/db?sslmode=require", "dsn: unknown option 'sslmode'"),
    ],
)
def test_bad_dsn(dsn, problem):
    with pytest.raises(SourceError) as info:
        connect_args(dsn)
    assert str(info.value).startswith(problem)
    assert ":p@" not in str(info.value)


def test_describe_never_shows_the_password():
    assert describe(connect_args("mysql://khanza:pw@db:3306/sik")) == "khanza@db:3306/sik"


# --- the source's settings ----------------------------------------------------------------

SOURCE_YAML = """
database: sqlite:///x.db
channels:
  bpjs: {{kind: bpjs_antrean, base_url: "https://x.example/", cons_id: "1", secret: s,
          user_key: k}}
sources:
  rs:
    kind: khanza
    dsn: mysql://u:p@h/sik
    channel: bpjs
    queries: {queries}
"""


def source_errors(queries: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(SOURCE_YAML.format(queries=queries))
    return [str(issue) for issue in info.value.issues]


def test_queries_take_integer_task_keys_and_named_parameters():
    settings = parse_config(
        SOURCE_YAML.format(
            queries='{1: "SELECT validasi FROM t WHERE nobooking = %(kodebooking)s", '
            "99: \"SELECT x FROM t WHERE a LIKE '%%B' AND d = %(tanggal)s\"}"
        )
    )
    rs = settings.sources["rs"]
    assert sorted(rs.queries) == ["1", "99"]
    assert (rs.jkn_only, rs.lookback_days, rs.jitter, rs.timeout) == (True, 0, 0.1, 120.0)


@pytest.mark.parametrize(
    ("queries", "problem"),
    [
        ('{8: "SELECT 1"}', "unknown task '8' (tasks: 1, 2, 3, 4, 5, 6, 7, 99)"),
        ('{"5": "SELECT t FROM x WHERE r = %s"}', "task 5: '%s' is not a parameter"),
        ('{"5": "SELECT t FROM x WHERE r = %(rawat)s"}', "task 5: '%(rawat)s' is not a parameter"),
        ('{"5": "SELECT t FROM x WHERE n LIKE \'100%\'"}', 'task 5: "%\'" is not a parameter'),
        ('{"3": " "}', "task 3: empty query"),
    ],
)
def test_bad_queries_are_refused_with_the_task(queries, problem):
    [found] = source_errors(queries)
    assert found.startswith("sources.rs.queries: ")
    assert problem in found
