"""Alert rules (``daemon.notify.rules``): which subjects each rule kind holds for,
judged from ``AlertInputs`` built by hand at a fixed instant (no clock, no
store); the rule settings' checks; and how a condition becomes notifications
(``Store.move_alerts``, on a SQLite file: no server): once when it starts, again
only after its window, once when it clears."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.config.database import DatabaseSettings
from daemon.domain.alerts import AlertInputs
from daemon.notify.rules import AlertSettings, evaluate
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.sync import Store

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SINCE_LONG_AGO = NOW - timedelta(days=30)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def rule(when: str, **settings: Any) -> AlertSettings:
    return AlertSettings.model_validate({"when": when, "notify": ["ops"], **settings})


def facts(schedules: tuple[str, ...] = ("a", "b"), **inputs: Any) -> AlertInputs:
    """Facts at NOW about schedules that exist since long ago (the store gives
    every live schedule a ``schedule_since``)."""
    since = {name: SINCE_LONG_AGO for name in schedules}
    return AlertInputs(NOW, schedule_since=since | inputs.pop("schedule_since", {}), **inputs)


# --- each rule kind, from a table ------------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]] = [
    # run_failed: the latest finished fire failed or was interrupted, no retry to come
    (
        "run_failed", {}, {"last_outcomes": {"a": ("failed", "HTTP 500", False)}},
        {"a": "the last run of a failed: HTTP 500"},
    ),
    (
        "run_failed", {}, {"last_outcomes": {"a": ("interrupted", None, False)}},
        {"a": "the last run of a interrupted: (no error)"},
    ),
    ("run_failed", {}, {"last_outcomes": {"a": ("failed", "HTTP 500", True)}}, {}),  # retrying
    ("run_failed", {}, {"last_outcomes": {"a": ("succeeded", None, False)}}, {}),
    ("run_failed", {}, {}, {}),  # never ran
    (
        "run_failed", {},
        {"last_outcomes": {"a": ("failed", "x", False), "b": ("failed", "y", False)}},
        {"a": "the last run of a failed: x", "b": "the last run of b failed: y"},
    ),
    (
        "run_failed", {"schedule": "b"},
        {"last_outcomes": {"a": ("failed", "x", False), "b": ("failed", "y", False)}},
        {"b": "the last run of b failed: y"},
    ),
    # a schedule that is gone (no schedule_since) is not judged
    ("run_failed", {}, {"last_outcomes": {"gone": ("failed", "x", False)}}, {}),
    # fire_missed: fires missed within the window
    (
        "fire_missed", {}, {"missed": {"a": 2}},
        {"a": "2 fire(s) of a missed in the last 1h"},
    ),
    (
        "fire_missed", {"window": "1h30m"}, {"missed": {"b": 1}},
        {"b": "1 fire(s) of b missed in the last 1h30m"},
    ),
    ("fire_missed", {}, {"missed": {"a": 0}}, {}),
    ("fire_missed", {"schedule": "b"}, {"missed": {"a": 2}}, {}),
    # no_success: no success for longer than over, counted from the last success...
    (
        "no_success", {"over": "1h"}, {"last_success": {"a": ago(3601), "b": ago(60)}},
        {"a": "a has not succeeded for 1h1s"},
    ),
    ("no_success", {"over": "1h"}, {"last_success": {"a": ago(3600), "b": ago(3600)}}, {}),
    # ... or from the schedule's creation when it never succeeded
    (
        "no_success", {"over": "1h"},
        {
            "schedule_since": {"a": ago(3601), "b": ago(3599)},
            "last_success": {"a": None, "b": None},
        },
        {"a": "a has not succeeded since it began (1h1s)"},
    ),
    (
        "no_success", {"over": "1d", "schedule": "a"}, {"last_success": {}},
        {"a": "a has not succeeded since it began (30d)"},
    ),
    # messages_failed: messages of a channel failed within the window
    (
        "messages_failed", {}, {"failed_messages": {"hie": 3, "bpjs": 0}},
        {"hie": "3 message(s) of hie failed in the last 1h"},
    ),
    ("messages_failed", {"channel": "bpjs"}, {"failed_messages": {"hie": 3}}, {}),
    ("messages_failed", {}, {"oldest_pending": {"hie": ago(99999)}}, {}),
    # breaker_open: open for at least over (any time open without over)
    (
        "breaker_open", {"over": "10m"}, {"breakers_open": {"hie": ago(601), "bpjs": ago(599)}},
        {"hie": "the circuit breaker of hie has been open for 10m1s"},
    ),
    (
        "breaker_open", {}, {"breakers_open": {"hie": ago(1)}},
        {"hie": "the circuit breaker of hie has been open for 1s"},
    ),
    ("breaker_open", {"over": "10m"}, {"failed_messages": {"hie": 5}}, {}),  # closed
    (
        "breaker_open", {"channel": "bpjs"}, {"breakers_open": {"hie": ago(60), "bpjs": ago(60)}},
        {"bpjs": "the circuit breaker of bpjs has been open for 1m"},
    ),
    # queue_age: the oldest pending message older than over
    (
        "queue_age", {"over": "15m"}, {"oldest_pending": {"hie": ago(901), "bpjs": ago(899)}},
        {"hie": "the oldest pending message of hie is 15m1s old"},
    ),
    ("queue_age", {"over": "15m"}, {"oldest_pending": {"hie": ago(900)}}, {}),
    ("queue_age", {"over": "15m"}, {"breakers_open": {"hie": ago(3600)}}, {}),  # nothing pending
]  # fmt: skip


@pytest.mark.parametrize(("when", "settings", "inputs", "expected"), CASES)
def test_each_rule_kind(
    when: str, settings: dict[str, Any], inputs: dict[str, Any], expected: dict[str, str]
) -> None:
    assert evaluate(rule(when, **settings), facts(**inputs)) == expected


def test_schedule_rules_ignore_channel_facts_and_the_reverse() -> None:
    everything = facts(
        ("a",),
        last_outcomes={"a": ("failed", "x", False)},
        missed={"a": 1},
        last_success={"a": None},
        failed_messages={"hie": 1},
        breakers_open={"hie": ago(86400)},
        oldest_pending={"hie": ago(86400)},
    )
    for when in ("run_failed", "fire_missed", "no_success"):
        assert set(evaluate(rule(when, over="1h"), everything)) == {"a"}
    for when in ("messages_failed", "breaker_open", "queue_age"):
        assert set(evaluate(rule(when, over="1h"), everything)) == {"hie"}


# --- the boundaries: exactly ``over`` ---------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "inputs_at"),
    [
        ("no_success", lambda at: {"last_success": {"a": at}}),
        ("queue_age", lambda at: {"oldest_pending": {"hie": at}}),
        ("breaker_open", lambda at: {"breakers_open": {"hie": at}}),
    ],
)
def test_exactly_over_is_not_over(when: str, inputs_at: Any) -> None:
    over = 600.0
    judged = {
        offset: bool(
            evaluate(rule(when, over=over), facts(("a",), **inputs_at(ago(over + offset))))
        )
        for offset in (-0.001, 0.0, 0.001)
    }
    assert judged == {-0.001: False, 0.0: False, 0.001: True}


def test_a_condition_clears() -> None:
    cases = [
        ("run_failed", {"last_outcomes": {"a": ("failed", "x", False)}},
         {"last_outcomes": {"a": ("succeeded", None, False)}}),
        ("fire_missed", {"missed": {"a": 1}}, {"missed": {}}),  # out of the window
        ("no_success", {"last_success": {"a": ago(7200)}}, {"last_success": {"a": ago(5)}}),
        ("messages_failed", {"failed_messages": {"hie": 1}}, {"failed_messages": {}}),
        ("breaker_open", {"breakers_open": {"hie": ago(7200)}}, {"breakers_open": {}}),
        ("queue_age", {"oldest_pending": {"hie": ago(7200)}}, {"oldest_pending": {}}),
    ]  # fmt: skip
    for when, holding, cleared in cases:
        judged = rule(when, over="1h")
        assert evaluate(judged, facts(("a",), **holding)), when
        assert evaluate(judged, facts(("a",), **cleared)) == {}, when


# --- the rule settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"when": "no_success"}, "no_success needs over"),
        ({"when": "queue_age", "channel": "hie"}, "queue_age needs over"),
        ({"when": "run_failed", "channel": "hie"}, "channel is for messages_failed"),
        ({"when": "queue_age", "over": "1m", "schedule": "a"}, "schedule is for run_failed"),
        ({"when": "disk_full"}, "Input should be"),
        ({"when": "run_failed", "notify": []}, "at least 1 item"),
        ({"when": "queue_age", "over": "0s"}, "greater than 0"),
        ({"when": "run_failed", "window": "-1m"}, "window"),
        ({"when": "run_failed", "schedule": "a\nb"}, "one line"),
    ],
)
def test_bad_rule_settings(settings: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        AlertSettings.model_validate({"notify": ["ops"], **settings})


def test_rule_names_and_defaults() -> None:
    assert rule("run_failed").rule == "run_failed"
    assert rule("run_failed", schedule="nightly").rule == "run_failed:nightly"
    assert rule("queue_age", channel="hie", over="15m").rule == "queue_age:hie"
    assert rule("queue_age", channel="hie", over="15m", name="hie slow").rule == "hie slow"
    assert rule("run_failed").window == 3600.0
    assert rule("breaker_open").over is None


# --- one notification per window (the alert state kept in the store) ---------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path}/outbox.db"
    db = open_database(DatabaseSettings(url=url))
    migrate(db)
    db.close()
    s = Store(open_database(DatabaseSettings(url=url)))
    yield s
    s.close()


def moves(store: Store, firing: dict[str, str], at: datetime, name: str = "r") -> list[Any]:
    return [
        (t.subject, t.event, t.details, t.since)
        for t in store.move_alerts(name, firing, 3600.0, at)
    ]


def test_a_condition_is_notified_once_per_window_then_once_resolved(store: Store) -> None:
    hour = timedelta(hours=1)
    assert moves(store, {"hie": "x"}, NOW) == [("hie", "firing", "x", NOW)]
    assert moves(store, {"hie": "x"}, NOW + timedelta(seconds=1)) == []
    assert moves(store, {"hie": "x2"}, NOW + hour - timedelta(seconds=1)) == []
    # exactly one window after the last notification: again, still since it began
    assert moves(store, {"hie": "x3"}, NOW + hour) == [("hie", "firing", "x3", NOW)]
    assert moves(store, {"hie": "x3"}, NOW + hour + timedelta(minutes=59)) == []
    # cleared: once resolved (with what it last said), then nothing
    later = NOW + 2 * hour + timedelta(minutes=30)
    assert moves(store, {}, later) == [("hie", "resolved", "x3", NOW)]
    assert moves(store, {}, later + hour) == []
    # holding again: a new firing, since now
    again = later + 2 * hour
    assert moves(store, {"hie": "y"}, again) == [("hie", "firing", "y", again)]


def test_subjects_and_rules_are_apart(store: Store) -> None:
    assert moves(store, {"a": "1", "b": "2"}, NOW) == [
        ("a", "firing", "1", NOW),
        ("b", "firing", "2", NOW),
    ]
    assert moves(store, {"a": "1"}, NOW + timedelta(minutes=1)) == [("b", "resolved", "2", NOW)]
    assert moves(store, {"a": "1"}, NOW, name="other") == [("a", "firing", "1", NOW)]


def test_rules_judged_over_time_notify_on_changes(store: Store) -> None:
    """evaluate → move_alerts, as the scheduler does every alert_interval."""
    judged = rule("queue_age", over="15m")
    oldest = NOW - timedelta(minutes=10)
    sent: list[tuple[str, str]] = []
    for minute in range(0, 180, 5):
        at = NOW + timedelta(minutes=minute)
        pending = {"hie": oldest} if minute < 120 else {}  # drained after two hours
        firing = evaluate(judged, AlertInputs(at, oldest_pending=pending))
        sent += [(t.event, f"{minute}") for t in store.move_alerts(judged.rule, firing, 3600, at)]
    # older than 15m from minute 10 (at 5 it is exactly 15m: not yet), again an hour
    # later, resolved when drained
    assert sent == [("firing", "10"), ("firing", "70"), ("resolved", "120")]
