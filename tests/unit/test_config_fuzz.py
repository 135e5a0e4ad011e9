"""Hostile config trees: whatever the file holds, loading it either gives settings
the daemons can run with, or a ``ConfigError`` naming the problem. Never another
exception, never a hang, and a tree that passes builds every channel and makes
every retry decision without an error."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.channels.base import Outcome
from daemon.channels.registry import build_channel
from daemon.config.errors import ConfigError
from daemon.config.loader import MAX_DEPTH, parse_config
from daemon.config.settings import Settings
from daemon.domain.messages import ClaimedMessage
from daemon.resilience.backoff import RetryPolicy
from daemon.resilience.ratelimit import Bucket
from daemon.roles.settle import settle
from daemon.runtime.frame import health_address

BASE: dict[str, Any] = {
    "database": "sqlite:///var/outboxd.db",
    "timezone": "Asia/Jakarta",
    "channels": {
        "hie": {
            "kind": "mllp",
            "host": "127.0.0.1",
            "port": 2575,
            "rate": "20/s",
            "encoding": "utf-8",
            "lease": "60s",
            "retry": {"max_attempts": 12, "backoff": "30s", "max_backoff": "1h", "max_age": "24h"},
        },
        "hook": {"kind": "http", "url": "http://127.0.0.1:8081/hook", "ordered": False},
        "bpjs": {
            "kind": "bpjs_antrean",
            "base_url": "http://127.0.0.1:8082/antreanrs",
            "cons_id": "1",
            "secret": "s",
            "user_key": "k",
            "burst": 3,
        },
    },
    "sources": {
        "rs": {"kind": "khanza", "dsn": "sqlite:///var/k.db", "channel": "bpjs", "jitter": 0.1}
    },
    "roles": {"dispatcher": {"base_port": 9110, "drain_timeout": "30s"}},
    "control": {"host": "127.0.0.1", "port": 8080},
}

# values that look like YAML, numbers at their limits, types that do not belong
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**31, 2**63, 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "true",
            "1e300",
            ".inf",
            "-1h",
            "99999999999w",
            "0s",
            "5/0s",
            "1/1ms",
            "999999999999/s",
            "utf-16",
            "rot13",
            "idna",
            "{a: b}",
            "[1, 2]",
            "*alias",
            "!!python/object:os.system",
            "x\nchannels: {}",
            "\x1b[31m",
            "http://",
            "http://[::1",
            "http://h:99999/",
            "sqlite:///",
            "sqlite:///:memory:",
            "postgresql://u@h:70000/db",
            "mysql://u@h:99999/db",
            "A" * 5000,
            "9" * 5000,
        ]
    ),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += paths(value, (*prefix, key))
    return out


def replaced(tree: dict[str, Any], path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(tree)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


ALL_PATHS = paths(BASE)[1:]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    tree: Any = BASE
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(tree)[1:] if isinstance(tree, dict) else []
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        extra = draw(st.sampled_from([None, "bogus_key", "kind"]))
        target = (*path, extra) if extra and isinstance(_at(tree, path), dict) else path
        tree = replaced(tree, target, draw(HOSTILE))
    return tree


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def runs(settings: Settings) -> None:
    """What a daemon does with the settings before and while it runs."""
    for role in type(settings.roles).model_fields:
        health_address(settings, role, 0)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    for channel in settings.channels.values():
        build_channel(channel)
        if channel.rate is not None:
            bucket = Bucket.for_rate(channel.rate, channel.burst)
            bucket.take(bucket.refill(0.0, channel.retry.max_age), 1)
        policy = RetryPolicy.from_settings(channel.retry)
        for attempts in (0, channel.retry.max_attempts - 1, channel.retry.max_attempts):
            message = ClaimedMessage(1, "c", "k", "k", b"", attempts, created, created)
            for answer in (Outcome.retry("x"), Outcome.retry("x", retry_after=10**9)):
                settle(message, answer, policy, now=lambda: created, rand=lambda: 1.0)
        assert 0 < channel.lease <= 366 * 86400


def load(tree: Any) -> Settings | None:
    text = yaml.safe_dump(tree, allow_unicode=True) if not isinstance(tree, str) else tree
    try:
        return parse_config(text, source="fuzz.yaml", environ={})
    except ConfigError as exc:
        assert exc.issues and all(str(issue) for issue in exc.issues)
        return None


def test_the_base_tree_is_valid():
    settings = load(BASE)
    assert settings is not None
    runs(settings)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_a_hostile_tree_is_refused_with_a_reason_or_runs(tree: Any):
    settings = load(tree)
    if settings is not None:
        runs(settings)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_refused_with_a_reason_or_runs(text: str):
    settings = load("database: sqlite:///x.db\n" + text)
    if settings is not None:
        runs(settings)


def bomb(levels: int, width: int) -> str:
    lines = ["database: sqlite:///x.db", 'x-a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"x-a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (bomb(9, 9), "values once its aliases are expanded"),  # 387 million values
        (bomb(30, 2), "values once its aliases are expanded"),
        ("database: sqlite:///x.db\nx: " + "[" * 5000 + "]" * 5000, "nested more than"),
        ("database: sqlite:///x.db\ncontrol: {port: " + "9" * 5000 + "}\n", "line 2"),
        ("database: sqlite:///x.db\nx: " + "{a: " * 3000 + "1" + "}" * 3000, "nested more than"),
        (
            "database: sqlite:///x.db\n"
            + "".join(" " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 2)),
            "nested more than",
        ),
    ],
)
@pytest.mark.timeout(20)  # expanding one would take minutes and gigabytes
def test_a_yaml_bomb_is_refused_without_expanding_it(text: str, reason: str):
    with pytest.raises(ConfigError, match=reason):
        parse_config(text)
