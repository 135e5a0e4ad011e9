"""A schedule's settings as the scheduler reads them (``daemon.config.schedules``): the
waits between the runs of a failed fire, the stored definition read back, the
timing of its fires with a real holiday calendar (the ``holidays`` package)
feeding the business-day rules of ``daemon.scheduling.fires``, and definitions that are not
one. The fire maths itself is ``test_cron.py``'s."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.config.schedules import (
    DefinitionError,
    calendar,
    definition,
    read_definition,
    retry_at,
    timing_of,
    zone_of,
)
from daemon.config.settings import ScheduleSettings, Settings
from daemon.jobs.registry import JOB_KINDS
from daemon.scheduling.fires import EPOCH, next_fires

BERLIN = ZoneInfo("Europe/Berlin")
JAKARTA = ZoneInfo("Asia/Jakarta")
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def schedule(**fields: Any) -> ScheduleSettings:
    return read_definition({"job": "purge", "cron": "0 6 * * *"} | fields)


def settings(**fields: Any) -> Settings:
    return Settings.model_validate({"database": "sqlite:///var/outboxd.db"} | fields)


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


# --- retry_at ----------------------------------------------------------------------------


def test_retries_by_default_wait_one_then_two_minutes_then_give_up() -> None:
    spec = schedule()
    assert retry_at(spec, 1, NOW) == NOW + timedelta(seconds=60)
    assert retry_at(spec, 2, NOW) == NOW + timedelta(seconds=120)
    assert retry_at(spec, 3, NOW) is None  # three runs made: max_attempts


@pytest.mark.parametrize(
    ("attempt", "wait"),
    [
        (1, 10.0),
        (2, 20.0),
        (3, 40.0),
        (4, 80.0),
        (5, 160.0),
        (6, 300.0),  # 320 capped at max_backoff
        (7, 300.0),
        (9, 300.0),
        (10, None),  # the tenth run failed: no more
        (11, None),
    ],
)
def test_the_backoff_doubles_per_attempt_up_to_its_cap(attempt: int, wait: float | None) -> None:
    spec = schedule(retry={"max_attempts": 10, "backoff": "10s", "max_backoff": "5m"})
    due = retry_at(spec, attempt, NOW)
    assert due == (None if wait is None else NOW + timedelta(seconds=wait))


def test_one_attempt_means_no_retry() -> None:
    assert retry_at(schedule(retry={"max_attempts": 1}), 1, NOW) is None


def test_a_late_attempt_is_capped_not_overflowing() -> None:
    spec = schedule(retry={"max_attempts": 100, "backoff": "1d", "max_backoff": "366d"})
    assert retry_at(spec, 99, NOW) == NOW + timedelta(days=366)
    assert retry_at(spec, 8, NOW) == NOW + timedelta(days=128)


def test_retry_waits_have_no_jitter() -> None:
    """``jitter`` delays a fire's start, not a retry: the wait is exact every time."""
    spec = schedule(jitter="5m", retry={"max_attempts": 5, "backoff": "30s"})
    dues = {retry_at(spec, 2, NOW) for _ in range(50)}
    assert dues == {NOW + timedelta(seconds=60)}


def test_the_due_time_keeps_the_zone_of_now() -> None:
    now = local(JAKARTA, 2026, 5, 1, 19, 0)
    due = retry_at(schedule(), 1, now)
    assert due is not None
    assert due.tzinfo is JAKARTA
    assert due - now == timedelta(minutes=1)


# --- definition / read_definition ------------------------------------------------------------

DEFINITIONS: list[dict[str, Any]] = [
    {"job": "purge", "cron": "0 2 * * *"},
    {
        "job": "http", "cron": "*/5 * * * *", "timezone": "Asia/Jakarta",
        "options": {
            "url": "https://partner.example/ping?x=1", "method": "POST",
            "headers": {"Authorization": "Bearer s3cret"}, "body": {"a": [1, 2.5, None]},
        },
        "retry": {"max_attempts": 5, "backoff": "30s", "max_backoff": "10m"},
    },
    {
        "job": "export", "every": "1h", "anchor": "2026-01-01T00:20:00+07:00",
        "options": {"what": "messages", "format": "ndjson"}, "jitter": "30s",
    },
    {
        "job": "report", "cron": "0 6 1 * *", "skip": ["weekends", "holidays"],
        "if_skipped": "next_business_day", "holidays": {"country": "DE", "subdiv": "BE"},
        "options": {"notify": ["ops"], "window": "1d"}, "enabled": False,
    },
    {
        "job": "status_check", "every": 300, "overlap": "queue_one", "catch_up": 0,
        "options": {"channel": "hie", "url": "https://x/{id}", "statuses": {"ok": "confirmed"}},
    },
    {
        "job": "command", "cron": "0 1 * * *", "overlap": "allow", "max_concurrent": 2,
        "start_at": "2026-01-01", "end_at": "2026-12-31T23:59:59+07:00", "max_runs": 100,
        "options": {
            "command": ["/usr/bin/env", "--day={{fire_local:%Y-%m-%d}}"],
            "env": {"MODE": "full"}, "pass_env": ["TOKEN"], "kill_grace": "2s",
        },
    },
]  # fmt: skip


@pytest.mark.parametrize("fields", DEFINITIONS, ids=[d["job"] for d in DEFINITIONS])
def test_a_definition_round_trips_through_its_stored_json(fields: dict[str, Any]) -> None:
    spec = read_definition(fields)
    stored = json.loads(json.dumps(definition(spec)))  # as the database keeps it
    again = read_definition(stored)
    assert again == spec
    assert definition(again) == stored
    assert type(again) is type(spec)
    assert type(again).__name__ != "ScheduleSettings"  # the job's own model
    assert again.options == spec.options


def test_a_definition_writes_every_default_out() -> None:
    stored = definition(read_definition({"job": "purge", "every": "5m"}))
    assert stored["every"] == 300.0
    assert stored["cron"] is None
    assert stored["retry"] == {"max_attempts": 3, "backoff": 60.0, "max_backoff": 3600.0}
    assert stored["options"]["batch"] == 1000
    assert set(stored) == set(ScheduleSettings.model_fields)


def test_every_job_kind_can_be_defined() -> None:
    assert {d["job"] for d in DEFINITIONS} == set(JOB_KINDS)


def test_the_anchor_keeps_its_offset_or_its_naivety() -> None:
    aware = read_definition(DEFINITIONS[2])
    assert definition(aware)["anchor"] == "2026-01-01T00:20:00+07:00"
    naive = read_definition({"job": "purge", "every": 3600, "anchor": "2026-01-01T00:20:00"})
    assert definition(naive)["anchor"] == "2026-01-01T00:20:00"
    # a naive anchor is wall time in the schedule's zone
    timing = timing_of(naive, settings(timezone="Asia/Jakarta"))
    assert timing.anchor == local(JAKARTA, 2026, 1, 1, 0, 20)
    first = next_fires(timing, datetime(2026, 5, 1, 3, 0, tzinfo=UTC))[0]
    assert first.at == datetime(2026, 5, 1, 3, 20, tzinfo=UTC)
    assert timing_of(read_definition({"job": "purge", "every": 60}), settings()).anchor == EPOCH


# --- bad stored definitions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "key", "reason"),
    [
        ({"cron": "0 2 * *"}, "cron", "expected 5 fields"),
        ({"cron": "0 2 * * *", "every": 60}, None, "give cron or every"),
        ({"cron": None}, None, "give cron or every"),
        ({"job": "defrag"}, "job", "defrag"),
        ({"job": None}, "job", ""),
        ({"retry": {"max_attempts": 0}}, "max_attempts", "greater than or equal to 1"),
        ({"retry": {"backoff": "soon"}}, "backoff", "invalid duration 'soon'"),
        ({"options": {"batch": 0}}, "batch", "greater than or equal to 1"),
        ({"options": {"nope": 1}}, "nope", "unknown key"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone 'Mars/Olympus'"),
        ({"holidays": {"country": "XX"}}, "holidays", "no calendar for country 'XX'"),
        ({"holidays": {"country": "DE", "subdiv": "ZZ"}}, "holidays", "no subdivision 'ZZ'"),
        ({"skip": ["mondays"]}, "skip", ""),
        ({"if_skipped": "next_business_day"}, None, "give skip"),
        ({"cron": None, "every": 60, "skip": ["weekends"], "if_skipped": "next_business_day"},
         None, "next_business_day is for cron schedules"),
        ({"cron": None, "every": 0.5}, "every", "greater than or equal to 1"),
        ({"anchor": "2026-01-01T00:00:00"}, None, "anchor is for every"),
        ({"enabled": 1}, "enabled", "expected true or false"),
    ],
)  # fmt: skip
def test_a_bad_definition_says_what_is_wrong(
    fields: dict[str, Any], key: str | None, reason: str
) -> None:
    data = {"job": "purge", "cron": "0 6 * * *"} | fields
    with pytest.raises(DefinitionError, match=r"\S") as caught:
        read_definition(data)
    text = str(caught.value)
    assert reason in text
    if key is not None:
        assert key in text


@pytest.mark.parametrize("data", [None, "cron: 0 6 * * *", [], 42])
def test_a_definition_that_is_not_a_mapping(data: Any) -> None:
    with pytest.raises(DefinitionError):
        read_definition(data)


def test_every_problem_is_named() -> None:
    data = {"job": "purge", "cron": "0 6 * * *", "timeout": "-1s", "colour": "red"}
    with pytest.raises(DefinitionError) as caught:
        read_definition(data)
    problems = str(caught.value).split("; ")
    assert len(problems) == 2
    assert any("timeout" in p for p in problems)
    assert any("colour" in p for p in problems)


def test_a_definition_error_is_a_value_error() -> None:
    assert issubclass(DefinitionError, ValueError)


# --- the holiday calendar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "subdiv", "day", "holiday"),
    [
        ("DE", "BE", date(2026, 10, 3), True),  # German Unity Day
        ("DE", None, date(2026, 10, 3), True),
        ("DE", "BE", date(2026, 10, 5), False),
        ("DE", "BE", date(2026, 12, 25), True),
        ("DE", "BE", date(2027, 3, 8), True),  # International Women's Day: Berlin only
        ("DE", "BY", date(2027, 3, 8), False),
        ("DE", None, date(2027, 3, 8), False),
        ("DE", "BY", date(2026, 1, 6), True),  # Epiphany: Bavaria, not Berlin
        ("DE", "BE", date(2026, 1, 6), False),
        ("DE", "BE", date(2041, 10, 3), True),  # years made as they are asked for
        ("ID", None, date(2026, 8, 17), True),  # Independence Day
        ("ID", None, date(2026, 8, 18), False),
        ("ID", None, date(2026, 10, 3), False),
    ],
)
def test_calendar(country: str, subdiv: str | None, day: date, holiday: bool) -> None:
    assert calendar(country, subdiv)(day) is holiday


def test_a_calendar_is_made_once() -> None:
    assert calendar("DE", "BE") is calendar("DE", "BE")
    assert calendar("DE", "BE") is not calendar("DE", "BY")


# --- timing_of: the calendar feeding the business-day rules ------------------------------------

BERLIN_FILE = settings(timezone="Europe/Berlin", holidays={"country": "DE", "subdiv": "BE"})


def fire_days(spec: ScheduleSettings, after: datetime, count: int, file: Settings) -> list[str]:
    return [f"{f.local:%a %Y-%m-%d %H:%M}" for f in next_fires(timing_of(spec, file), after, count)]


def test_german_unity_day_is_skipped_with_the_files_calendar() -> None:
    after = local(BERLIN, 2026, 10, 2, 7, 0)
    daily = schedule(cron="0 6 * * *", skip=["holidays"])
    assert fire_days(daily, after, 2, BERLIN_FILE) == [
        "Sun 2026-10-04 06:00",
        "Mon 2026-10-05 06:00",
    ]
    # without skip: [holidays] it fires that day
    assert fire_days(schedule(), after, 1, BERLIN_FILE) == ["Sat 2026-10-03 06:00"]


def test_a_holiday_on_a_weekday_moves_to_the_next_business_day() -> None:
    # 8 March 2027 is a Monday, a holiday in Berlin (not in Bavaria)
    spec = schedule(cron="0 6 8 * *", skip=["weekends", "holidays"], if_skipped="next_business_day")
    after = local(BERLIN, 2027, 3, 1)
    [fire] = next_fires(timing_of(spec, BERLIN_FILE), after)
    assert fire.local == local(BERLIN, 2027, 3, 9, 6, 0)
    assert fire.note == "moved from Mon 2027-03-08, a public holiday"
    bavaria = settings(timezone="Europe/Berlin", holidays={"country": "DE", "subdiv": "BY"})
    [fire] = next_fires(timing_of(spec, bavaria), after)
    assert fire.local == local(BERLIN, 2027, 3, 8, 6, 0)
    assert fire.note is None


def test_german_unity_day_on_a_saturday_is_moved_as_a_weekend() -> None:
    spec = schedule(cron="0 6 3 * *", skip=["weekends", "holidays"], if_skipped="next_business_day")
    [fire] = next_fires(timing_of(spec, BERLIN_FILE), local(BERLIN, 2026, 9, 30))
    assert fire.local == local(BERLIN, 2026, 10, 5, 6, 0)
    assert fire.note == "moved from Sat 2026-10-03, a weekend"


def test_the_schedules_own_calendar_and_zone_win_over_the_files() -> None:
    # 17 August 2026 (a Monday) is Indonesia's Independence Day, not a German holiday
    spec = schedule(
        cron="0 9 17 * *", timezone="Asia/Jakarta", holidays={"country": "ID"},
        skip=["weekends", "holidays"], if_skipped="next_business_day",
    )  # fmt: skip
    timing = timing_of(spec, BERLIN_FILE)
    assert timing.zone == JAKARTA == zone_of(spec, BERLIN_FILE)
    [fire] = next_fires(timing, local(JAKARTA, 2026, 8, 1))
    assert fire.local == local(JAKARTA, 2026, 8, 18, 9, 0)
    assert fire.at == datetime(2026, 8, 18, 2, 0, tzinfo=UTC)
    assert fire.note == "moved from Mon 2026-08-17, a public holiday"
    # with the file's (German) calendar the 17th is a business day
    german = schedule(
        cron="0 9 17 * *", timezone="Asia/Jakarta", skip=["holidays"],
    )  # fmt: skip
    [fire] = next_fires(timing_of(german, BERLIN_FILE), local(JAKARTA, 2026, 8, 1))
    assert fire.local == local(JAKARTA, 2026, 8, 17, 9, 0)


def test_skip_holidays_without_any_calendar_skips_no_day() -> None:
    """A definition from the CLI is not cross-checked with the file: with no
    calendar anywhere, ``skip: [holidays]`` finds no holiday."""
    spec = schedule(skip=["holidays"], timezone="Europe/Berlin")
    days = fire_days(spec, local(BERLIN, 2026, 10, 2, 7, 0), 1, settings())
    assert days == ["Sat 2026-10-03 06:00"]


def test_timing_of_carries_the_schedules_rules() -> None:
    spec = schedule(
        cron="30 2 * * *", on_missing_time="skip", on_repeated_time="twice",
        skip=["weekends"], if_skipped="next_business_day",
    )  # fmt: skip
    timing = timing_of(spec, settings(timezone="Europe/Berlin"))
    assert timing.zone == BERLIN
    assert timing.cron is not None and timing.every is None
    assert (timing.on_missing_time, timing.on_repeated_time) == ("skip", "twice")
    assert (timing.skip_weekends, timing.skip_holidays) == (True, False)
    assert timing.if_skipped == "next_business_day"
    every = timing_of(read_definition({"job": "purge", "every": "15m"}), settings())
    assert every.every == 900.0 and every.cron is None and every.zone == ZoneInfo("UTC")
