"""docs/monitoring.md against the files it describes: its alertmanager.yml is the
shipped one, its table of alerts has every rule (with its severity and ``for:``),
its table of families is what each role registers, and its check commands pass
(the commands that start servers: tests/e2e/test_monitoring_docs.py)."""

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
from tests.services import amtool, promtool

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "monitoring.md").read_text()
OPS = ROOT / "ops" / "prometheus"
COMMANDS = [
    line
    for block in re.findall(r"```sh\n(.*?)```", DOC, re.S)
    for line in block.splitlines()
    if line.strip()
]
CHECKS = [c for c in COMMANDS if c.startswith(("promtool ", "amtool check-config "))]
RULES = {
    rule["alert"]: rule
    for group in yaml.safe_load((OPS / "rules.yml").read_text())["groups"]
    for rule in group["rules"]
}


def table_rows(first_header: str) -> list[list[str]]:
    """The rows of the table whose first header is ``first_header``, as cells."""
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_alertmanager_example_is_the_shipped_file():
    [block] = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
    assert yaml.safe_load(block) == yaml.safe_load((OPS / "alertmanager.yml").read_text())


def test_the_table_has_every_alert_with_its_severity_and_for():
    rows = {row[0].strip("`"): row for row in table_rows("alert")}
    assert set(rows) == set(RULES)
    for name, rule in RULES.items():
        _, severity, when, *_ = rows[name]
        assert severity == rule["labels"]["severity"], name
        if "for" in rule:
            assert f"for {rule['for']}" in when, name


def test_the_families_table_is_what_each_role_exports():
    classes = {
        "dispatcher": DispatcherMetrics,
        "poller": PollerMetrics,
        "scheduler": SchedulerMetrics,
        "control": ControlMetrics,
    }
    rows = table_rows("role")
    assert [row[0] for row in rows] == list(classes)
    for role, cell in rows:
        registry = Metrics().registry
        classes[role](registry)
        exported = {m.name for m in registry.collect()} - {"outboxd_up"}
        named = {re.sub(r"_total$", "", n) for n in re.findall(r"`(outboxd_[a-z_]+)", cell)}
        assert named == exported, role


@pytest.mark.parametrize("command", CHECKS)
def test_a_check_command_passes(command: str):
    tool = promtool() if command.startswith("promtool") else amtool()
    _, rest = command.split(" ", 1)
    result = subprocess.run(
        ["bash", "-c", f'"$0" {rest}', tool], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_page_has_its_checks():
    assert len(CHECKS) == 3
