import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.domain.units import Rate
from daemon.resilience.ratelimit import Bucket


@pytest.mark.parametrize(
    ("rate", "burst", "capacity"),
    [(Rate(1, 1), None, 1), (Rate(50, 1), None, 5), (Rate(120, 60), None, 1), (Rate(5, 1), 20, 20)],
)
def test_capacity(rate, burst, capacity):
    bucket = Bucket.for_rate(rate, burst)
    assert bucket.capacity == capacity
    assert bucket.rate == rate.per_second


@pytest.mark.parametrize(
    ("tokens", "elapsed", "after"),
    [(0, 0.1, 5.0), (0, 0.02, 1.0), (4.5, 1.0, 10.0), (3, -5.0, 3.0), (10, 1.0, 10.0)],
)
def test_refill(tokens, elapsed, after):
    assert Bucket(rate=50, capacity=10).refill(tokens, elapsed) == pytest.approx(after)


@pytest.mark.parametrize(
    ("tokens", "wanted", "granted", "left", "wait"),
    [
        (3.5, 2, 2, 1.5, 0.0),
        (3.5, 5, 3, 0.5, 0.0),
        (0.5, 1, 0, 0.5, 0.01),
        (0.0, 1, 0, 0.0, 0.02),
        (0.9999999999, 1, 1, 0.0, 0.0),  # float noise does not lose a token
    ],
)
def test_take(tokens, wanted, granted, left, wait):
    got = Bucket(rate=50, capacity=10).take(tokens, wanted)
    assert got[0] == granted
    assert got[1] == pytest.approx(left, abs=1e-6)
    assert got[2] == pytest.approx(wait)


@given(
    rate=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(min_value=1, max_value=100),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.5), st.integers(1, 10)), max_size=60
    ),
)
def test_never_more_than_rate_times_time_plus_burst(rate, burst, steps):
    bucket = Bucket(rate=rate, capacity=float(burst))
    tokens, total, clock = bucket.capacity, 0, 0.0
    for elapsed, wanted in steps:
        clock += elapsed
        tokens = bucket.refill(tokens, elapsed)
        granted, tokens, wait = bucket.take(tokens, wanted)
        total += granted
        assert tokens >= -1e-9
        assert wait >= 0
        assert total <= rate * clock + burst + 1e-6
