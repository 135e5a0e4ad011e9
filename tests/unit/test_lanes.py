"""The order the suite's tests are handed out in: the tests that mostly wait in
lanes of about equal length, each at the head of one worker's run; every other
test in collection order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import WAITING_SECONDS, in_lanes


class Item:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def ordered(collected: list[Any], lanes: int, workers: int) -> list[Any]:
    return cast(list[Any], in_lanes(cast(list[pytest.Item], collected), lanes, workers))


def waits(item: Any) -> bool:
    return repr(item) in WAITING_SECONDS


@pytest.mark.parametrize(("lanes", "workers"), [(3, 5), (3, 4), (1, 2)])
def test_the_waiting_tests_run_in_lanes_at_the_heads_of_the_workers_runs(
    lanes: int, workers: int
) -> None:
    rest = [Item(f"tests/unit/test_{n:03}.py") for n in range(300)]
    waiting = [Item(f"tests/{key}") for key in WAITING_SECONDS for _ in range(2)]
    collected = [*rest[:40], *waiting, *rest[40:]]
    out = ordered(collected, lanes, workers)
    assert sorted(map(repr, out)) == sorted(map(repr, collected))  # none lost or doubled
    assert [i for i in out if not waits(i)] == rest  # the rest in collection order
    starts = [len(collected) * k // workers for k in range(lanes)]
    ends = [*starts[1:], len(out)]
    found = []
    for start, end in zip(starts, ends, strict=True):
        lane = [i for i in out[start:end] if waits(i)]
        assert out[start : start + len(lane)] == lane  # at the head of a worker's run
        found.append(sum(WAITING_SECONDS[repr(i)] for i in lane) / 2)
    assert sum(found) == sum(WAITING_SECONDS.values())  # every waiting test in a lane
    assert max(found) - min(found) <= max(WAITING_SECONDS.values()), found  # about equal


def test_without_lanes_or_waiting_tests_the_order_is_kept() -> None:
    collected = [Item("tests/unit/test_a.py"), Item("tests/unit/test_b.py")]
    assert ordered(collected, 3, 5) == collected
    with_waiting = [*collected, Item("tests/e2e/test_chaos.py")]
    assert ordered(with_waiting, 0, 1) == with_waiting


def test_every_module_named_as_waiting_is_there() -> None:
    """A module renamed or removed would silently leave the lanes."""
    tests = Path(__file__).resolve().parents[1]
    assert [key for key in WAITING_SECONDS if not (tests / key).is_file()] == []
