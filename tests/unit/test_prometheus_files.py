"""ops/prometheus/: the scrape config and the alert rules as promtool reads them,
and every metric a rule names is one outboxd exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from daemon.runtime.metrics import Metrics, SchedulerMetrics
from tests.services import promtool

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
DATABASE_METRICS = {  # exported by the control role at scrape time
    "outboxd_queue_messages",
    "outboxd_queue_oldest_pending_age_seconds",
    "outboxd_process_running",
    "outboxd_webhook_receipts",
}


@pytest.mark.parametrize(("what", "file"), [("config", "prometheus.yml"), ("rules", "rules.yml")])
def test_promtool_accepts(what: str, file: str):
    result = subprocess.run(
        [promtool(), "check", what, str(OPS / file)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"SUCCESS" in result.stdout + result.stderr


def test_every_metric_a_rule_names_is_exported():
    registry = Metrics().registry
    SchedulerMetrics(registry)
    exported = {metric.name for metric in registry.collect()} | DATABASE_METRICS
    rules = yaml.safe_load((OPS / "rules.yml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 7
    for rule in rules:
        for name in re.findall(r"\boutboxd_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(total|sum|count|bucket)$", "", name)
            assert base in exported or name in exported, (rule["alert"], name)
