"""The soak's arithmetic (``ops/soakrun``): the claim time's quantile from histogram
scrapes, the thirds a verdict compares, the sparkline; and that docs/soak.md's
commands are ones ``ops/soak.py`` takes."""

from __future__ import annotations

import importlib
import math
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"
INF = float("inf")


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The soak's modules, imported as ``ops/soak.py`` imports them."""
    monkeypatch.syspath_prepend(str(OPS / "bench"))
    monkeypatch.syspath_prepend(str(OPS))
    return {
        name: importlib.import_module(name)
        for name in ("soakrun.samples", "soakrun.verdicts", "soak")
    }


def test_quantile_interpolates_within_the_bucket_of_the_interval(soak):
    quantile = soak["soakrun.samples"].histogram_quantile
    before = {0.001: 10.0, 0.01: 10.0, 0.1: 10.0, INF: 10.0}  # earlier claims: not counted
    after = {0.001: 60.0, 0.01: 100.0, 0.1: 110.0, INF: 110.0}  # 100 since: 50, 40, 10
    assert quantile(0.5, before, after) == pytest.approx(0.001)
    # rank 99 of 100 lies in (0.01, 0.1]: 9 of its 10 -> 0.01 + 0.09 * 0.9
    assert quantile(0.99, before, after) == pytest.approx(0.091)
    assert math.isnan(quantile(0.99, after, after))  # no claims in the interval


def test_quantile_beyond_the_last_bound_answers_the_last_bound(soak):
    quantile = soak["soakrun.samples"].histogram_quantile
    assert quantile(0.99, {}, {0.5: 0.0, 5.0: 1.0, INF: 100.0}) == 5.0


def test_a_figure_that_grows_in_the_last_third_fails(soak):
    v = soak["soakrun.verdicts"]
    flat = [100.0] * 3 + [100.0, 101.0, 99.0] + [100.0, 102.0, 101.0]
    grown = [100.0] * 3 + [100.0, 101.0, 99.0] + [120.0, 125.0, 130.0]
    assert v.judge("RSS x", "MiB", flat, v.MEMORY).result == "PASS"
    verdict = v.judge("RSS x", "MiB", grown, v.MEMORY)
    assert verdict.result == "FAIL"
    assert verdict.ratio == pytest.approx(1.25)
    # the first third is the warm-up: filling up there is not judged
    assert v.judge("db", "MiB", [1.0, 50.0, 90.0] + [100.0] * 6, v.DATABASE).result == "PASS"


def test_small_integers_have_slack_and_a_falling_rate_fails(soak):
    v = soak["soakrun.verdicts"]
    assert v.judge("fds", "", [17] * 6 + [19] * 3, v.FDS).result == "PASS"  # +2 allowed
    assert v.judge("fds", "", [17] * 6 + [25] * 3, v.FDS).result == "FAIL"
    assert v.judge("rate", "msg/s", [600] * 6 + [500] * 3, v.RATE).result == "FAIL"
    assert v.judge("rate", "msg/s", [600] * 6 + [590] * 3, v.RATE).result == "PASS"
    shown = v.judge("visits", "", [1, 2, 3, 4, 5, 6], v.SHOWN)
    assert shown.result == "-"
    assert v.judge("x", "", [1.0, None], v.MEMORY).result == "-"  # too few to judge


def test_sparkline_spans_the_series_in_a_bounded_width(soak):
    spark = soak["soakrun.verdicts"].sparkline
    assert spark([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert len(spark(list(range(1000)))) == 48
    assert set(spark([5.0] * 10)) == {"▄"}
    assert spark([]) == ""


def test_the_commands_in_docs_soak_md_are_ones_the_soak_takes(soak):
    page = (REPO / "docs" / "soak.md").read_text()
    commands = re.findall(r"^\s*(?:\.venv/bin/python )?(ops/soak\.py[^\n`]*)$", page, re.M)
    commands += re.findall(r"`(ops/soak\.py [^`]*)`", page)  # the runs' own, in the text
    assert len(commands) >= 4
    for command in commands:
        args = shlex.split(command, comments=True)[1:]
        parsed = soak["soak"].parse_args(args)
        assert parsed.messages > 0, command
