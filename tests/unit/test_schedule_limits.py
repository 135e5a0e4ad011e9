"""What bounds a schedule's fires and what a run is given: ``start_at`` and
``end_at`` (in the timing, in its zone), ``max_runs`` and ``max_concurrent``
through the config pipeline (each refused with its path), the run's
placeholders (``{{fire:%Y-%m-%d}}`` …) in the options of the jobs that take
them, and what a resolved alert says resolved it."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.config.errors import ConfigError
from daemon.config.loader import parse_config
from daemon.config.schedules import read_definition, timing_of
from daemon.domain.alerts import AlertInputs
from daemon.domain.errors import Refused
from daemon.jobs import template
from daemon.jobs.template import RunFacts, problems, render, render_tree
from daemon.notify.rules import AlertSettings, resolution
from daemon.operator.schedules import built
from daemon.scheduling.fires import fires_between, next_fires

JAKARTA = ZoneInfo("Asia/Jakarta")
BERLIN = ZoneInfo("Europe/Berlin")


def parse(text: str) -> Any:
    return parse_config(textwrap.dedent(text), source="test.yaml", environ={})


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(issue) for issue in info.value.issues]


def schedule(fields: str, top: str = "timezone: Asia/Jakarta") -> str:
    return f"""
        database: sqlite:///x.db
        {top}
        schedules:
          s: {{{fields}}}
        """


HTTP = 'job: http, options: {url: "http://127.0.0.1/ping"}'


# --- start_at, end_at -------------------------------------------------------------------------


def test_no_fire_before_start_at_none_after_end_at_both_in_the_schedules_zone():
    settings = parse(schedule(f'cron: "0 6 * * *", start_at: 2026-03-10, '
                              f'end_at: "2026-03-12 06:00", {HTTP}'))  # fmt: skip
    timing = timing_of(settings.schedules["s"], settings)
    assert timing.start == datetime(2026, 3, 10, tzinfo=JAKARTA)
    assert timing.end == datetime(2026, 3, 12, 6, tzinfo=JAKARTA)
    fires = [f.local.day for f in fires_between(timing, datetime(2026, 1, 1, tzinfo=UTC),
                                                datetime(2027, 1, 1, tzinfo=UTC))]  # fmt: skip
    assert fires == [10, 11, 12]  # the last at end_at itself
    assert next_fires(timing, datetime(2026, 3, 12, 6, tzinfo=JAKARTA)) == []


def test_a_fire_at_start_at_is_one_and_an_offset_is_kept():
    settings = parse(schedule(
        f'every: 1h, start_at: "2026-03-29T01:00:00+01:00", timezone: Europe/Berlin, {HTTP}'
    ))  # fmt: skip
    timing = timing_of(settings.schedules["s"], settings)
    first = next_fires(timing, datetime(2000, 1, 1, tzinfo=UTC), 3)
    assert [f.at for f in first] == [datetime(2026, 3, 29, h, tzinfo=UTC) for h in (0, 1, 2)]
    assert [f.local.hour for f in first] == [1, 3, 4]  # the clocks go forward at 02:00


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('every: 1h, start_at: 2026-03-02, end_at: 2026-03-01',
         "schedules.s.end_at: end_at (2026-03-01T00:00:00) is not later than start_at"),
        ('cron: "0 6 1 * *", start_at: 2026-03-02, end_at: 2026-03-31',
         "schedules.s.end_at: the schedule never fires from start_at (2026-03-02T00:00:00+07:00) "
         "to end_at (2026-03-31T00:00:00+07:00)"),
        ('every: 1h, start_at: "2026-03-02T10:00:00+07:00", end_at: "2026-03-02 09:00"',
         "schedules.s.end_at: 2026-03-02T09:00:00+07:00 is not later than start_at"),
        ("every: 1h, start_at: soon", "schedules.s.start_at: Input should be a valid datetime"),
        ("every: 1h, max_runs: 0", "schedules.s.max_runs: Input should be greater than or equal"),
        ("every: 1h, max_runs: many", "schedules.s.max_runs: expected a whole number, got 'many'"),
        ("every: 1h, max_concurrent: 2",
         "schedules.s.max_concurrent: max_concurrent is for overlap: allow (overlap: skip runs"),
        ("every: 1h, overlap: queue_one, max_concurrent: 2",
         "schedules.s.max_concurrent: max_concurrent is for overlap: allow"),
        ("every: 1h, overlap: allow, max_concurrent: 0",
         "schedules.s.max_concurrent: Input should be greater than or equal to 1"),
        ("every: 1h, overlap: allow, max_concurrent: 5000",
         "schedules.s.max_concurrent: Input should be less than or equal to 1000"),
    ],
)  # fmt: skip
def test_a_wrong_bound_is_refused_with_its_path(fields: str, expected: str):
    found = errors(schedule(f"{fields}, {HTTP}"))
    assert any(e.startswith(expected) for e in found), found


def test_the_bounds_are_accepted_and_kept():
    settings = parse(schedule(
        f"every: 1m, overlap: allow, max_concurrent: 3, max_runs: 10, {HTTP}"
    ))  # fmt: skip
    spec = settings.schedules["s"]
    assert (spec.max_concurrent, spec.max_runs, spec.start_at, spec.end_at) == (3, 10, None, None)


def test_a_schedule_given_on_the_command_line_is_refused_the_same_way():
    settings = parse(schedule(f"every: 1h, {HTTP}"))
    fields = {"cron": "0 6 1 * *", "job": "http", "options": {"url": "http://x/"},
              "start_at": "2026-03-02", "end_at": "2026-03-31"}  # fmt: skip
    with pytest.raises(Refused, match=r"end_at: the schedule never fires from start_at"):
        built(fields, "mine", settings)
    fields["end_at"] = "2026-04-01T06:00:00"
    assert built(fields, "mine", settings)["end_at"] == "2026-04-01T06:00:00"


def test_a_stored_definition_keeps_its_bounds():
    spec = read_definition({"every": 60, "job": "purge", "start_at": "2026-01-01T00:00:00",
                            "max_runs": 3})  # fmt: skip
    assert spec.start_at == datetime(2026, 1, 1) and spec.max_runs == 3


# --- the run's placeholders -------------------------------------------------------------------

FACTS = RunFacts("nightly", datetime(2026, 3, 1, 17, 30, tzinfo=UTC), JAKARTA, 2, 41)


@pytest.mark.parametrize(
    ("text", "filled"),
    [
        ("{{schedule}}", "nightly"),
        ("{{ schedule }}-{{attempt}}-{{run}}", "nightly-2-41"),
        ("{{fire}}", "2026-03-01T17:30:00Z"),
        ("{{fire_local}}", "2026-03-02T00:30:00+07:00"),
        ("{{fire:%Y-%m-%d}}", "2026-03-01"),
        ("{{fire_local:%Y-%m-%d}}", "2026-03-02"),  # the next day in Jakarta
        ("{{ fire_local:%d.%m.%Y %H:%M }}", "02.03.2026 00:30 "),  # the format as written
        ('{"day": "{{fire:%Y%m%d}}"}', '{"day": "20260301"}'),  # a JSON body's braces stay
        ("{start}-{{fire:%H}}", "{start}-17"),  # an export name's own too
        ("{{ }} {{not a name}} {{", "{{ }} {{not a name}} {{"),
    ],
)
def test_placeholders_are_filled(text: str, filled: str):
    assert problems(text) == []
    assert render(text, FACTS) == filled


def test_in_a_url_each_value_is_percent_encoded():
    url = "https://x.example/r?at={{fire_local:%Y-%m-%dT%H:%M%z}}&s={{schedule}}"
    assert (
        render(url, FACTS, url=True) == "https://x.example/r?at=2026-03-02T00:30%2B0700&s=nightly"
    )


def test_a_body_mappings_strings_are_filled_not_its_keys():
    body = {"{{schedule}}": ["{{attempt}}", 3, {"day": "{{fire:%d}}"}], "n": None}
    assert render_tree(body, FACTS) == {"{{schedule}}": ["2", 3, {"day": "01"}], "n": None}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{{day}}", "unknown placeholder '{{day}}' (one of {{schedule}}, {{fire}}"),
        ("{{Fire}}", "unknown placeholder '{{Fire}}'"),
        ("{{attempt:03d}}", "'{{attempt:03d}}': only {{fire}} and {{fire_local}} take a :FORMAT"),
        ("{{fire:}}", "'{{fire:}}': an empty FORMAT"),
    ],
)
def test_a_placeholder_that_is_not_one_is_told(text: str, problem: str):
    assert problems(text)[0].startswith(problem)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('job: http, options: {url: "http://x/{{day}}"}',
         "schedules.s.options.url: unknown placeholder '{{day}}'"),
        ('job: http, options: {url: "{{schedule}}/x"}',
         "schedules.s.options.url: expected an http:// or https:// URL"),
        ('job: http, options: {url: "http://x/", headers: {X-Day: "{{date}}"}}',
         "schedules.s.options.headers: unknown placeholder '{{date}}'"),
        ('job: http, options: {url: "http://x/", body: {a: ["{{fire:%Y}}", "{{nope}}"]}}',
         "schedules.s.options.body: unknown placeholder '{{nope}}'"),
        ('job: export, options: {what: runs, name: "{{day}}.csv"}',
         "schedules.s.options.name: unknown placeholder '{{day}}'"),
        ('job: export, options: {what: runs, name: "{day}.csv"}',
         "schedules.s.options.name: KeyError('day') is not one of {schedule}"),
        ('job: command, options: {command: [/bin/x, "{{fire_local:%F}}", "{{when}}"]}',
         "schedules.s.options.command[2]: unknown placeholder '{{when}}'"),
        ('job: command, options: {command: /bin/x --all}',
         "schedules.s.options.command: a list: [program, argument, …]"),
        ('job: command, options: {command: [/bin/x], env: {OUTBOXD_RUN: "1"}}',
         "schedules.s.options.env: OUTBOXD_RUN: the OUTBOXD_* variables are the run's"),
        ('job: command, options: {command: [/bin/x], timeout: 5s}',
         "schedules.s.options.timeout: unknown key"),
    ],
)  # fmt: skip
def test_a_wrong_placeholder_in_a_jobs_options_is_refused_with_its_path(options, expected):
    found = errors(schedule(f"every: 1h, {options}"))
    assert any(e.startswith(expected) for e in found), found


def test_a_url_with_a_space_in_a_format_is_a_url_once_filled():
    settings = parse(schedule('every: 1h, job: http, options: '
                              '{url: "http://x/r?t={{fire_local:%d %b %Y}}"}'))  # fmt: skip
    assert settings.schedules["s"].options.url.endswith("{{fire_local:%d %b %Y}}")


def test_the_sample_a_check_fills_with_is_a_real_run():
    assert template.SAMPLE.value("fire", "%Y") == "2026"


# --- a resolved alert says what resolved it ---------------------------------------------------

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def rule(when: str, **settings: Any) -> AlertSettings:
    return AlertSettings.model_validate({"when": when, "notify": ["ops"], **settings})


def facts(**inputs: Any) -> AlertInputs:
    since = {"a": NOW - timedelta(days=30)}
    return AlertInputs(NOW, schedule_since=since | inputs.pop("schedule_since", {}), **inputs)


@pytest.mark.parametrize(
    ("alert", "inputs", "said"),
    [
        (rule("run_failed"),
         {"last_outcomes": {"a": ("succeeded", None, False)},
          "last_fire": {"a": datetime(2026, 5, 1, 11, 0, tzinfo=UTC)}},
         "the latest run of a succeeded (the fire of 2026-05-01T11:00:00+00:00)"),
        (rule("fire_missed", window="30m"), {}, "no fire of a was missed in the last 30m"),
        (rule("no_success", over="1h"), {"last_success": {"a": NOW - timedelta(minutes=5)}},
         "a succeeded at 2026-05-01T11:55:00+00:00"),
        (rule("messages_failed"), {}, "no message of a failed in the last 1h"),
        (rule("breaker_open", over="5m"), {}, "the circuit breaker of a is no longer open"),
        (rule("queue_age", over="15m"), {}, "no message of a is pending"),
        (rule("queue_age", over="15m"), {"oldest_pending": {"a": NOW - timedelta(minutes=2)}},
         "the oldest pending message of a is 2m old"),
    ],
)  # fmt: skip
def test_a_resolution_says_what_resolved_it(alert, inputs, said):
    assert resolution(alert, "a", facts(**inputs)) == said


def test_a_schedule_removed_resolves_its_alerts_saying_so():
    assert resolution(rule("no_success", over="1h"), "a", AlertInputs(NOW)) == "a was removed"
