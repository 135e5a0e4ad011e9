import re
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.runtime.metrics import (
    ControlMetrics,
    DispatcherMetrics,
    Metrics,
    PollerMetrics,
    SchedulerMetrics,
)
from tests.services import promtool

# channel, role, loop, source, schedule, job, webhook and notify target names, supervisord's
# program names, results and statuses: never a patient identifier, a key or a URL
ALLOWED_LABELS = {
    "channel", "result", "loop", "role", "source", "schedule", "status", "job", "target",
    "program", "webhook",
}  # fmt: skip


def _sample_every_family(families: object, skip: set[str] | None = None) -> None:
    for name, metric in vars(families).items():
        if name in (skip or set()) or not getattr(metric, "_labelnames", ()):
            continue
        child = metric.labels(**{label: "x" for label in metric._labelnames})
        (child.inc if hasattr(child, "inc") else child.observe)(1)


def expositions() -> dict[str, str]:
    """Each role's /metrics as its process exports it: the frame's families and
    the role's, each with a sample."""
    out = {}
    for role, families in (
        ("dispatcher", DispatcherMetrics),
        ("poller", PollerMetrics),
        ("scheduler", SchedulerMetrics),
        ("control", ControlMetrics),
    ):
        m = Metrics()
        m.up.labels(role).set(1)
        own = families(m.registry)
        _sample_every_family(own)
        if isinstance(own, DispatcherMetrics):
            own.leases_expired.inc()
        if isinstance(own, ControlMetrics):
            own.supervisor_up.set(1)
        out[role] = generate_latest(m.registry).decode()
    return out


def test_names_units_and_labels_follow_prometheus_conventions():
    families = [f for text in expositions().values() for f in text_string_to_metric_families(text)]
    assert len({family.name for family in families}) >= 29
    for family in families:
        assert family.name.startswith("outboxd_")
        assert family.documentation, family.name
        assert re.fullmatch(r"[a-z_]+", family.name)
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        else:
            assert not family.name.endswith("_total"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
        assert family.samples, family.name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, sample


def test_no_created_series():
    assert not any("_created" in text for text in expositions().values())


@pytest.mark.parametrize("role", ["dispatcher", "poller", "scheduler", "control"])
def test_promtool_finds_nothing_to_lint(role: str):
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=expositions()[role].encode(),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""
