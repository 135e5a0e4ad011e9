"""Run ``outboxd run ROLE`` as a real process for tests, and talk to it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.zygote import ForkedProcess, spawn

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds a role gets to come up: its imports are slow on a loaded machine
# seconds a short-lived process (a simulator refusing a busy port, one stopped by a
# signal) gets to end: its imports alone can take seconds while other tests load the cores
PROCESS_WAIT = 60.0


def gone(pid: int) -> bool:
    """Exited (a zombie counts: its parent may not have reaped it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


class DaemonProcess:
    """One role process; ``await start()`` returns once its /healthz says it runs
    (200, or 503 for a problem of its loops, but not "starting"). It is forked from
    the test process's zygote (``tests.support.zygote``: outboxd imported once), or
    with ``forked=False`` exec'd as ``python -m daemon``."""

    def __init__(
        self,
        workdir: Path,
        config: Path,
        role: str = "dispatcher",
        num: int = 0,
        forked: bool = True,
    ):
        self.workdir = workdir
        self.forked = forked
        self.config = config
        self.role = role
        self.num = num
        self.log = workdir / f"{role}-{num}.log"
        self.proc: asyncio.subprocess.Process | ForkedProcess | None = None
        self.health_port: int | None = None

    async def start(
        self, health_port: int, timeout: float = START_TIMEOUT, wait: bool = True
    ) -> None:
        """Spawn it and (unless not ``wait``) wait until /healthz says it runs."""
        self.health_port = health_port
        argv = ["run", self.role, "-c", str(self.config), "--process-num", str(self.num)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if self.forked:
            self.proc = spawn(argv, self.workdir, env, self.log)
        else:
            self._logfile = self.log.open("ab")
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemon", *argv,
                cwd=self.workdir, stdout=self._logfile, stderr=self._logfile, env=env,
                start_new_session=True,  # a process group of its own, as under supervisord
            )  # fmt: skip
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise AssertionError(f"{self.role} exited {self.proc.returncode}:\n{self.output()}")
            try:
                status, body = await self.health()
                if status in (200, 503) and body.get("status") != "starting":
                    return
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.role} did not come up in {timeout:g}s:\n{self.output()}")

    def children(self) -> list[int]:
        """The process ids of its child processes."""
        assert self.proc is not None
        tasks = Path(f"/proc/{self.proc.pid}/task")
        return [
            int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()
        ]

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.health_port}{path}", timeout=aiohttp.ClientTimeout(total=5)
            ) as response,
        ):
            return response.status, await response.text()

    async def health(self) -> tuple[int, dict[str, Any]]:
        status, text = await self.get("/healthz")
        return status, json.loads(text)

    async def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        _, text = await self.get("/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric, _, rest = sample.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return 0.0

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, timeout: float = 30.0, group: bool = False) -> int:
        """SIGTERM (to its whole process group with ``group``, as supervisord's
        stopasgroup does) and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            if group:
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        if hasattr(self, "_logfile"):
            self._logfile.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
