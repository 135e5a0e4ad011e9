"""The demo's failure switch: the shares it takes, the command that sets it, and a
simulator's view of it (seen again within a moment, a share of the dice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.sim import fail
from daemon.sim.fail import CHECK_EVERY, FailSwitch, parse_share


@pytest.mark.parametrize(
    ("text", "share"),
    [("30%", 0.3), ("0.3", 0.3), ("100%", 1.0), ("0", 0.0), ("off", 0.0), ("OFF", 0.0),
     ("on", 1.0), (" 5% \n", 0.05), ("1", 1.0)],
)  # fmt: skip
def test_the_shares_it_takes(text: str, share: float):
    assert parse_share(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["", "lots", "150%", "-0.1", "2", "30 %x"])
def test_what_is_not_a_share_is_refused_saying_why(text: str):
    with pytest.raises(ValueError, match="not a share"):
        parse_share(text)


def test_the_command_sets_says_and_ends_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    switch = tmp_path / "var" / "sim-fail"
    assert fail.main(["--file", str(switch)]) == 0
    assert capsys.readouterr().out == f"failure switch ({switch}): every delivery succeeds\n"
    assert fail.main(["30%", "--file", str(switch)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"failure switch ({switch}): 30% of deliveries fail\n")
    assert "python -m daemon.sim.fail off" in out
    assert switch.read_text() == "0.3\n"
    assert fail.main(["--file", str(switch)]) == 0
    assert "30% of deliveries fail" in capsys.readouterr().out
    assert fail.main(["off", "--file", str(switch)]) == 0
    assert "every delivery succeeds" in capsys.readouterr().out
    assert switch.read_text() == "0\n"


def test_the_command_refuses_a_bad_share_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    switch = tmp_path / "sim-fail"
    switch.write_text("0.5\n")
    assert fail.main(["lots", "--file", str(switch)]) == fail.EX_USAGE
    assert "not a share: 'lots'" in capsys.readouterr().err
    assert switch.read_text() == "0.5\n"


def test_the_command_says_when_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert fail.main(["30%", "--file", str(blocked / "sim-fail")]) == fail.EX_CANTCREAT
    assert f"cannot write {blocked / 'sim-fail'}" in capsys.readouterr().err


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_simulator_sees_the_switch_within_a_moment_and_fails_its_share(tmp_path: Path):
    path = tmp_path / "sim-fail"
    clock = Clock()
    dice = iter([0.1, 0.5, 0.29, 0.31, 0.0, 0.99])
    switch = FailSwitch(path, "sim-test", dice=lambda: next(dice), clock=clock)
    assert not switch.fails()  # no file: no failures, and no dice thrown
    fail.write_share(path, 0.3)
    assert not switch.fails()  # looked at a moment ago: not seen yet
    clock.now += CHECK_EVERY
    assert [switch.fails() for _ in range(4)] == [True, False, True, False]
    assert switch.failed == 2
    assert "30% of deliveries" in switch.reason
    fail.write_share(path, 0.0)
    clock.now += CHECK_EVERY
    assert not switch.fails()  # off: no dice thrown
    assert next(dice) == 0.0


def test_a_switch_file_that_cannot_be_read_is_off(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "sim-fail"
    path.write_text("garbage")
    switch = FailSwitch(path, dice=lambda: 0.0)
    assert not switch.fails()
    assert "taken as off" in caplog.text


def test_without_a_file_it_never_fails():
    assert not FailSwitch(None, dice=lambda: 0.0).fails()
