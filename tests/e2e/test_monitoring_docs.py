"""docs/monitoring.md's commands that start and ask servers, run as written from a
directory holding the repository's ops/ (``var/`` made there): Prometheus and
Alertmanager started with the page's flags, then its curl and amtool lines
against them. Only their ports change, to free ones: 9090 and 9093 may be taken."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.services import alertmanager, amtool, prometheus
from tests.support.ports import free_port
from tests.support.processes import ROOT
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DOC = (ROOT / "docs" / "monitoring.md").read_text()
COMMANDS = [
    line
    for block in re.findall(r"```sh\n(.*?)```", DOC, re.S)
    for line in block.splitlines()
    if line.strip()
]
SERVERS = [c for c in COMMANDS if c.startswith(("prometheus ", "prometheus-alertmanager "))]
QUERIES = [c for c in COMMANDS if c.startswith(("curl ", "amtool alert ", "amtool silence "))]


@contextlib.contextmanager
def started(command: list[str], cwd: Path, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_page_names_both_servers_and_its_queries():
    assert len(SERVERS) == 2 and len(QUERIES) == 4


async def test_the_pages_servers_start_and_answer_its_queries(tmp_path: Path):
    tools = {"prometheus": prometheus(), "prometheus-alertmanager": alertmanager(),
             "amtool": amtool()}  # fmt: skip
    (tmp_path / "ops").symlink_to(ROOT / "ops")
    ports = {"9090": free_port(), "9093": free_port()}

    def as_run(line: str) -> str:
        for port, free in ports.items():
            line = line.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
        word, rest = line.split(" ", 1)
        return f"{tools.get(word, word)} {rest}"

    def logs() -> str:
        return "\n".join(log.read_text(errors="replace")[-2000:] for log in tmp_path.glob("*.log"))

    with contextlib.ExitStack() as stack:
        for n, line in enumerate(SERVERS):
            command = ["bash", "-c", f"exec {as_run(line)}"]
            stack.enter_context(started(command, tmp_path, tmp_path / f"server-{n}.log"))
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                for free in ports.values():
                    try:
                        async with session.get(f"http://127.0.0.1:{free}/-/ready") as response:
                            if response.status != 200:
                                return False
                    except aiohttp.ClientError:
                        return False
                return True

            await eventually(ready, "Prometheus and Alertmanager ready", 60, logs)
        for line in QUERIES:
            result = subprocess.run(
                ["bash", "-c", as_run(line)],
                cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, (line, result.stdout, result.stderr, logs())
            if line.startswith("curl "):
                assert json.loads(result.stdout)["status"] == "success", line
    assert {p.name for p in (tmp_path / "var").iterdir()} == {"prometheus", "alertmanager"}
