import re
import subprocess

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.runtime.metrics import Metrics, PollerMetrics
from tests.services import promtool

ALLOWED_LABELS = {"channel", "result", "loop", "role", "source"}


def exposition() -> str:
    m = Metrics()
    m.deliveries.labels("hie", "delivered").inc()
    m.send_seconds.labels("hie").observe(0.01)
    m.in_flight.labels("hie").set(1)
    m.claimed.labels("hie").inc(3)
    m.claim_seconds.labels("hie").observe(0.002)
    m.leases_lost.labels("hie").inc()
    m.leases_expired.inc()
    m.breaker_state.labels("hie").set(2)
    m.rate_limit_waits.labels("hie").inc()
    m.rate_limit_wait_seconds.labels("hie").inc(0.5)
    m.loop_errors.labels("claim").inc()
    m.up.labels("dispatcher").set(1)
    poller = PollerMetrics(m.registry)
    for metric in vars(poller).values():
        if hasattr(metric, "_labelnames"):
            labels = {name: "x" for name in metric._labelnames}
            child = metric.labels(**labels) if labels else metric
            (child.inc if hasattr(child, "inc") else child.observe)(1)
    return generate_latest(m.registry).decode()


def test_names_units_and_labels_follow_prometheus_conventions():
    families = list(text_string_to_metric_families(exposition()))
    assert len(families) >= 11
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
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, sample


def test_no_created_series():
    assert "_created" not in exposition()


def test_promtool_finds_nothing_to_lint():
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=exposition().encode(),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""
