"""Chaos on the whole suite in a form short enough for CI (about one or two minutes of
faults): the checks of ``ops/cluster/chaos.py`` (every message delivered, none
lost, repeats only of what was in flight at a fault, every visit's tasks in
order, each fire once, every program back and ready). The full run is
``ops/chaos.py`` (docs/operations.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ops.cluster.chaos import Chaos
from ops.cluster.servers import ServerUnavailable
from tests.services import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def test_the_suite_survives_a_minute_of_chaos_and_loses_nothing():
    chaos = Chaos(Path(sys.executable).parent.parent, duration=60, seed=7, every=3.0)
    try:
        report = await chaos.run()
    except ServerUnavailable as exc:
        unavailable(
            "database servers of the test's own", exc, "install postgresql and mariadb-server"
        )
    print("\n".join(report.lines()))
    assert report.problems == [], report.lines()
    kinds = {fault.split()[0] for fault in report.faults}
    assert {"SIGKILL", "PostgreSQL", "MariaDB", "SIGHUP"} <= kinds, report.faults
    assert any("partner down" in fault for fault in report.faults), report.faults
    assert report.enqueued["hie"] > 0 and report.tasks > 0 and report.fires > 0, report.lines()
