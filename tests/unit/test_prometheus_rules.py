"""The unit tests of ops/prometheus/rules.yml in ops/prometheus/tests/, as
``promtool test rules`` runs them: they pass; every alert has a case where it
fires and one where it does not; and they hold each rule to both, since the rule
broken to never fire, or to fire always, fails its tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import promtool

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
TESTS = sorted((OPS / "tests").glob("*.yml"))
RULES: list[dict[str, Any]] = [
    rule for group in yaml.safe_load((OPS / "rules.yml").read_text())["groups"]
    for rule in group["rules"]
]  # fmt: skip
ALERTS = [rule["alert"] for rule in RULES]


def run_tests(directory: Path, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "test", "rules", *(f.name for f in files)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cases() -> list[tuple[Path, dict[str, Any]]]:
    """Every alert_rule_test of every file: (file, the case)."""
    out = []
    for file in TESTS:
        for test in yaml.safe_load(file.read_text())["tests"]:
            out += [(file, case) for case in test.get("alert_rule_test", [])]
    return out


def test_the_rule_tests_pass():
    assert TESTS
    result = run_tests(OPS / "tests", TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TESTS), result.stdout


def test_every_test_file_reads_the_shipped_rules():
    for file in TESTS:
        assert yaml.safe_load(file.read_text())["rule_files"] == ["../rules.yml"], file.name


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_has_a_case_that_fires_and_one_that_does_not(alert: str):
    mine = [case for _, case in cases() if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in mine), f"{alert}: no case where it fires"
    assert any(not case.get("exp_alerts") for case in mine), f"{alert}: no case where it does not"


def test_every_case_names_a_shipped_alert():
    assert {case["alertname"] for _, case in cases()} <= set(ALERTS)


@pytest.mark.parametrize("broken", ["vector(0) > 1", "vector(1)"], ids=["never", "always"])
@pytest.mark.parametrize("alert", ALERTS)
def test_a_rule_that_never_or_always_fires_fails_its_tests(alert: str, broken: str, tmp_path: Path):
    """A copy of ops/prometheus with this rule's expression replaced: its tests fail,
    naming it."""
    copy = tmp_path / "prometheus"
    shutil.copytree(OPS, copy)
    rules = yaml.safe_load((OPS / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = broken
    (copy / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    files = sorted({file.name for file, case in cases() if case["alertname"] == alert})
    result = run_tests(copy / "tests", [copy / "tests" / name for name in files])
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"alertname: {alert}," in result.stdout + result.stderr
