from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.resilience.backoff import RetryPolicy, backoff_ceiling, backoff_delay

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, backoff=30, max_backoff=600, max_age=3600)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (6, 600), (50, 600), (10_000, 600)],
)
def test_ceiling_doubles_up_to_the_cap(attempt, ceiling):
    assert backoff_ceiling(attempt, 30, 600) == ceiling


@given(
    attempt=st.integers(min_value=1, max_value=100_000),
    base=st.floats(min_value=0.001, max_value=3600),
    cap=st.floats(min_value=0.001, max_value=86400),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_delay_within_full_jitter_bounds(attempt, base, cap, r):
    cap = max(cap, base)
    delay = backoff_delay(attempt, base, cap, rand=lambda: r)
    assert 0 <= delay <= cap
    assert delay <= base * 2 ** min(attempt - 1, 62)


@given(attempt=st.integers(min_value=1, max_value=200))
def test_ceiling_never_decreases(attempt):
    assert backoff_ceiling(attempt + 1, 30, 3600) >= backoff_ceiling(attempt, 30, 3600)


@given(
    attempts=st.integers(min_value=1, max_value=4),
    elapsed=st.floats(min_value=0, max_value=3599),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_retry_is_never_past_the_age_deadline(attempts, elapsed, r):
    now = T0 + timedelta(seconds=elapsed)
    decision = POLICY.decide(attempts, T0, now, rand=lambda: r)
    assert decision.retry_at is not None
    assert now <= decision.retry_at <= T0 + timedelta(seconds=3600)


def test_gives_up_when_attempts_run_out():
    decision = POLICY.decide(5, T0, T0 + timedelta(seconds=10))
    assert decision.retry_at is None
    assert decision.reason == "gave up after 5 attempt(s)"


def test_gives_up_when_too_old():
    decision = POLICY.decide(1, T0, T0 + timedelta(hours=1))
    assert decision.retry_at is None
    assert "max_age 1h" in decision.reason


def test_last_retry_lands_on_the_deadline():
    # a peer asks for 2 h, but the message may only live 1 h: one last try at the deadline
    decision = POLICY.decide(1, T0, T0 + timedelta(minutes=50), requested_delay=7200)
    assert decision.retry_at == T0 + timedelta(hours=1)


def test_requested_delay_replaces_backoff():
    decision = POLICY.decide(3, T0, T0, requested_delay=42, rand=lambda: 0.99)
    assert decision.retry_at == T0 + timedelta(seconds=42)
    assert "peer asked" in decision.reason


def test_jitter_is_drawn_from_rand():
    low = POLICY.decide(3, T0, T0, rand=lambda: 0.0)
    high = POLICY.decide(3, T0, T0, rand=lambda: 0.5)
    assert low.retry_at == T0
    assert high.retry_at == T0 + timedelta(seconds=60)
