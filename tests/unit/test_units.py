import pytest

from daemon.domain.units import Rate, format_duration, parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("500ms", 0.5),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("24h", 86400),
        ("1d", 86400),
        ("2w", 1209600),
        ("90", 90),
        (90, 90),
        (1.5, 1.5),
        (" 10S ", 10),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "1h 30m", "-5s", "s", True, None, [1]])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (90, "1m30s"), (86400, "1d"), (3661, "1h1m1s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "per_second", "shown"),
    [
        ("5/s", 5.0, "5/s"),
        ("1/s", 1.0, "1/s"),
        ("120/m", 2.0, "120/m"),
        ("3600/h", 1.0, "3600/h"),
        ("1/30s", 1 / 30, "1/30s"),
        ("0.5/s", 0.5, "0.5/s"),
    ],
)
def test_rates(text, per_second, shown):
    rate = parse_rate(text)
    assert rate.per_second == pytest.approx(per_second)
    assert str(rate) == shown


@pytest.mark.parametrize("text", ["5", "5/x", "0/s", "/s", "five/s", 5, "5/0s"])
def test_bad_rates(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_rate_passes_through():
    rate = Rate(2, 1)
    assert parse_rate(rate) is rate
