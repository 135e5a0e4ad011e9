from daemon.resilience.breaker import BreakerState, CircuitBreaker


def test_opens_after_consecutive_failures_only():
    b = CircuitBreaker(failures=3, cooldown=10)
    b.failure(0)
    b.failure(1)
    b.success()  # a success resets the count
    b.failure(2)
    b.failure(3)
    assert b.state is BreakerState.CLOSED and b.allow(3)
    b.failure(4)
    assert b.state is BreakerState.OPEN
    assert not b.allow(5)
    assert b.retry_in(5) == 9


def test_half_open_lets_one_probe_through():
    b = CircuitBreaker(failures=1, cooldown=10)
    b.failure(0)
    assert not b.allow(9.9)
    assert b.allow(10)  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow(10.1)  # only one at a time
    b.success()
    assert b.state is BreakerState.CLOSED
    assert b.allow(10.2) and b.allow(10.3)


def test_failed_probe_opens_again_for_a_full_cooldown():
    b = CircuitBreaker(failures=5, cooldown=10)
    for t in range(5):
        b.failure(t)
    assert b.allow(14)
    b.failure(14)
    assert b.state is BreakerState.OPEN
    assert not b.allow(23)
    assert b.allow(24)


def test_cool_makes_an_open_breaker_half_open_only_past_its_cooldown():
    b = CircuitBreaker(failures=1, cooldown=10)
    b.failure(0)
    b.cool(9.9)
    assert b.state is BreakerState.OPEN
    b.cool(10)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow(10.5)  # the next send is the probe
    assert not b.allow(10.6)
    b.failure(11)
    assert b.state is BreakerState.OPEN and b.retry_in(11) == 10
    closed = CircuitBreaker(failures=3, cooldown=10)
    closed.cool(100)
    assert closed.state is BreakerState.CLOSED
