"""The order the suite's tests are handed out in: the end-to-end tests in two lanes
of about equal length, one at the head of the first worker's run, one at the head
of the second's; every other test in collection order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import E2E_SECONDS, WORKERS, in_two_lanes


class Item:
    def __init__(self, path: str, name: str) -> None:
        self.path = Path(path)
        self.name = name

    def __repr__(self) -> str:
        return f"{self.path.name}::{self.name}"


def items(*specs: str) -> list[Any]:
    return [Item(*spec.split("::")) for spec in specs]


def test_the_end_to_end_tests_run_in_two_lanes_at_the_heads_of_two_runs() -> None:
    e2e = [f"tests/e2e/{name}::t" for name in E2E_SECONDS] + ["tests/e2e/test_new.py::t"]
    rest = [f"tests/unit/test_{n:03}.py::t" for n in range(200)]
    collected = items(*rest[:50], *e2e, *rest[50:])
    ordered = cast(list[Any], in_two_lanes(cast(list[pytest.Item], collected)))
    assert sorted(map(repr, ordered)) == sorted(map(repr, collected))  # none lost or doubled
    second = len(collected) // WORKERS
    first_lane = [i for i in ordered[:second] if i.path.parent.name == "e2e"]
    second_lane = [i for i in ordered[second:] if i.path.parent.name == "e2e"]
    assert ordered[: len(first_lane)] == first_lane  # at the head of the first run
    assert ordered[second : second + len(second_lane)] == second_lane  # and of the second
    seconds = [
        sum(E2E_SECONDS.get(i.path.name, 10) for i in lane) for lane in (first_lane, second_lane)
    ]
    assert abs(seconds[0] - seconds[1]) <= max(E2E_SECONDS.values()) // 4, seconds
    assert first_lane[0].path.name == max(E2E_SECONDS, key=E2E_SECONDS.__getitem__)
    others = [repr(i) for i in ordered if i.path.parent.name != "e2e"]
    assert others == [repr(i) for i in items(*rest)]  # in collection order


def test_a_run_without_end_to_end_tests_keeps_its_order() -> None:
    collected = items("tests/unit/test_a.py::x", "tests/unit/test_b.py::y")
    assert in_two_lanes(cast(list[pytest.Item], collected)) == collected
