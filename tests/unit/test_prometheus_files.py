"""ops/prometheus/: the scrape config and the alert rules as promtool reads them,
and every metric a rule names is one outboxd exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from daemon.runtime.metrics import (
    ControlMetrics,
    DispatcherMetrics,
    Metrics,
    PollerMetrics,
    SchedulerMetrics,
)
from tests.services import promtool

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"


def exported() -> set[str]:
    """Every family some role exports (each role on a registry of its own, as in
    its process)."""
    names: set[str] = set()
    for families in (DispatcherMetrics, PollerMetrics, SchedulerMetrics, ControlMetrics):
        registry = Metrics().registry
        families(registry)
        names |= {metric.name for metric in registry.collect()}
    return names


@pytest.mark.parametrize(("what", "file"), [("config", "prometheus.yml"), ("rules", "rules.yml")])
def test_promtool_accepts(what: str, file: str):
    result = subprocess.run(
        [promtool(), "check", what, str(OPS / file)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"SUCCESS" in result.stdout + result.stderr


def test_every_metric_a_rule_names_is_exported():
    names = exported()
    rules = yaml.safe_load((OPS / "rules.yml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 7
    for rule in rules:
        for name in re.findall(r"\boutboxd_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(total|sum|count|bucket)$", "", name)
            assert base in names or name in names, (rule["alert"], name)
