"""The prefetch reserve follows the channel's pace: a batch for a fast channel,
next to nothing for a slow one."""

from __future__ import annotations

import pytest

from daemon.roles.prefetch import Prefetch


def run(prefetch: Prefetch, rate: float, claim_seconds: float, claims: int = 20):
    """Claims ``claims`` times, a second apart, sending at ``rate`` messages a
    second in between; returns the clock and the count at the last claim."""
    now, started = 0.0, 0
    for i in range(claims):
        if i:
            now += 1.0
            started += round(rate)
        prefetch.claimed(now, started, claim_seconds)
    return now, started


def test_nothing_is_reserved_before_the_pace_is_known():
    prefetch = Prefetch(100)
    assert prefetch.reserve == 0
    assert prefetch.claimed(0.0, 0, 0.004) == 0  # one claim: no pace yet


def test_a_fast_channel_keeps_what_it_sends_during_two_claims():
    # 10,000 msgs/s, claims of 4 ms: 40 sent during one claim, 80 kept
    prefetch = Prefetch(100)
    run(prefetch, 10_000, 0.004)
    assert prefetch.reserve == 80


def test_the_reserve_is_at_most_a_batch():
    for batch, rate in ((100, 50_000), (1, 10_000)):
        prefetch = Prefetch(batch)
        run(prefetch, rate, 0.010)
        assert prefetch.reserve == batch


@pytest.mark.parametrize(("rate", "expected"), [(13.0, 1), (1.0, 1), (0.0, 0)])
def test_a_slow_channel_keeps_next_to_nothing(rate: float, expected: int):
    # a peer that takes 0.3 s per message on 4 connections, a rate limit of 1/s, idle
    prefetch = Prefetch(100)
    run(prefetch, rate, 0.005)
    assert prefetch.reserve == expected


def test_idle_time_does_not_drag_the_pace_down():
    prefetch = Prefetch(100)
    now, started = run(prefetch, 10_000, 0.004)
    before = prefetch.rate, prefetch.reserve
    # an hour idle: claims find nothing, nothing is sent
    prefetch.claimed(now + 3600.0, started, 0.004)
    prefetch.claimed(now + 3601.0, started, 0.004)
    assert (prefetch.rate, prefetch.reserve) == before


def test_the_pace_follows_a_change_within_a_few_claims():
    prefetch = Prefetch(100)
    now, started = run(prefetch, 10_000, 0.004)
    for _ in range(15):  # the peer slows to 10 msgs/s
        now += 1.0
        started += 10
        prefetch.claimed(now, started, 0.004)
    assert prefetch.reserve == 1
    assert 10 <= prefetch.rate < 100  # from 10,000, most of the way down
