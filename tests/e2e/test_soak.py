"""``ops/soak.py`` at a tiny size: the harness starts the suite under supervisord,
offers its traffic, samples, drains, stops every program and prints its table with a
verdict per figure. At this size the verdicts themselves mean little (the database
is still filling when the last third begins): the test checks the harness, not them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
OUTBOXD = ("control-0", "dispatcher-0", "dispatcher-1", "poller-0", "scheduler-0", "scheduler-1")
FIGURES = ("database size", "message rows", "claim p99", "delivery rate", "backlog (pending)")


def test_a_tiny_soak_prints_every_figure_with_its_verdict(tmp_path):
    csv = tmp_path / "samples.csv"
    done = subprocess.run(
        [
            sys.executable, str(REPO / "ops" / "soak.py"),
            "--messages", "1500", "--visits", "30", "--rate", "100", "--every", "1",
            "--keep", str(tmp_path / "suite"), "--csv", str(csv),
        ],
        capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 2: the soak itself failed
    table = out[out.index("figure ") :]
    for name in OUTBOXD:
        for what in ("RSS", "fds"):
            assert re.search(rf"^{what} {name} .* (PASS|FAIL) ", table, re.M), (name, table)
    assert re.search(r"^RSS dispatcher-0/child .* (PASS|FAIL) ", table, re.M)  # the store worker
    assert re.search(r"^RSS sim-mllp .* not judged ", table, re.M)
    for figure in FIGURES:
        assert re.search(rf"^{re.escape(figure)} ", table, re.M), figure
    verdict = re.search(r"^verdict: (PASS|FAIL) \((\d+) of (\d+) judged figures flat", out, re.M)
    assert verdict, out
    assert (verdict.group(1) == "PASS") == (done.returncode == 0)
    # everything offered was delivered, and every program stopped cleanly on SIGTERM
    assert "offered        1,500 accepted by the API" in out
    assert re.search(r"^  left in db     sent [\d,]+$", out, re.M), out
    exits = re.search(r"^  exits          (.*)$", out, re.M)
    assert exits
    assert all(part.endswith(" 0") for part in exits.group(1).split(", ")), exits.group(1)
    assert "accounting:" not in out and "restarted" not in out
    assert len(csv.read_text().splitlines()) > 5  # a header and the samples
