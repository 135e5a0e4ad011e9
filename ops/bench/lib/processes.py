"""The processes a benchmark starts: dispatchers (``python -m daemon run dispatcher``) and
the canned MLLP simulator, each logging to a file of its own; how the bench knows they
are up, reads their metrics, stops them (SIGTERM, then SIGKILL, however the run ends),
and counts the CPU they use (from /proc)."""

from __future__ import annotations

import asyncio
import atexit
import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from lib.ports import free_ports as free_ports  # re-exported: the scripts' ports
from lib.report import first_line, log

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")
STARTUP_TIMEOUT = 30.0
LOOPS = "event loops"  # the dispatchers' main threads, where asyncio runs
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ChildExited(RuntimeError):
    """A process of the bench ended while it was needed."""


class StartupError(RuntimeError):
    """The processes of a run did not come up (a port taken meanwhile, say): worth one
    more try with new ports."""


async def retry_startup(what: str, make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()``; once more if its processes did not come up."""
    try:
        return await make()
    except StartupError as exc:
        log(f"  {what}: start-up failed ({first_line(exc)}); once more with new ports")
        return await make()


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the listening TCP socket on ``port`` (from /proc;
    True where /proc cannot tell). A port found free may still be taken by another
    program on a shared machine before our process binds it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return True
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a dispatcher's store worker)."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        return [int(c) for task in tasks.iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


# --- children ------------------------------------------------------------------------------


_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (an exception escaped a ``finally``): no child outlives the bench."""
    for popen in list(_LIVE):
        if popen.poll() is None:
            popen.kill()


class Child:
    """A process the bench started, its output in a log file; ``ready()`` returns once
    ``answers()`` says it serves."""

    unready = "did not come up"  # what ``ready()`` says when it gives up

    def __init__(self, name: str, argv: Sequence[str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                list(argv), cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        _LIVE.add(self.popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check(self) -> None:
        """Raise if the process has ended: its last line first, then its output."""
        if not self.alive():
            output = self.output().strip()
            last = output.splitlines()[-1] if output else "no output"
            raise ChildExited(f"{self.name} exited {self.popen.returncode}: {last}\n{output}")

    async def answers(self) -> bool:
        raise NotImplementedError

    async def ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until the process serves (it may die first: ``ChildExited``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if await self.answers():
                return
            await asyncio.sleep(0.05)
        raise StartupError(f"{self.unready}:\n{self.output()}")


async def stop_all(children: Sequence[Child], timeout: float) -> None:
    """SIGTERM every child, wait up to ``timeout``, then SIGKILL what is left."""
    for child in children:
        if child.alive():
            child.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(c.alive() for c in children) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for child in children:
        if child.alive():
            log(f"{child.name} did not stop within {timeout:.0f} s: killed")
            child.popen.kill()
        child.popen.wait()
        _LIVE.discard(child.popen)


async def run_all(name: str, argv: Sequence[str], copies: int, timeout: float) -> list[bytes]:
    """Run ``copies`` processes of ``argv`` at once, to their end: the stdout of each (an
    exit code other than 0 raises, with stderr); none is left running however this ends."""
    procs = [
        await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(copies)
    ]
    try:
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"{name} exited {proc.returncode}: {err.decode()[-2000:]}")
    return [out for out, _ in outputs]


# --- dispatchers and the canned peer ---------------------------------------------------------


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    want = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, rest = sample.partition("{")
        got = sorted(rest.rstrip("}").split(",")) if rest else []
        if metric_name == name and got == want:
            return float(value)
    return 0.0


class Dispatcher(Child):
    """``python -m daemon run dispatcher -c CONFIG --process-num NUM``; health and
    metrics on ``base_port + num``."""

    def __init__(self, config: Path, num: int, base_port: int, workdir: Path) -> None:
        argv = [sys.executable, "-m", "daemon", "run", "dispatcher", "-c", str(config)]
        super().__init__(f"dispatcher-{num}", [*argv, "--process-num", str(num)], workdir)
        self.port = base_port + num
        self.unready = f"{self.name} did not answer /healthz"

    async def answers(self) -> bool:
        """/healthz answers, from this process (the machine may be shared)."""
        try:
            status, _ = await asyncio.to_thread(http_get, self.port, "/healthz")
        except (OSError, http.client.HTTPException):
            return False
        return status in (200, 503) and listens(self.pid, self.port)

    async def metrics(self) -> str:
        return (await asyncio.to_thread(http_get, self.port, "/metrics"))[1]


async def scrape(dispatchers: Sequence[Dispatcher], name: str, **labels: str) -> list[float]:
    """One sample of each dispatcher's /metrics."""
    texts = await asyncio.gather(*(d.metrics() for d in dispatchers))
    return [metric(text, name, **labels) for text in texts]


class CannedPeer(Child):
    """``python -m daemon.sim.mllp --canned`` as its own process."""

    unready = "the simulator did not listen"

    def __init__(self, workdir: Path) -> None:
        self.port = free_ports()
        argv = [sys.executable, "-m", "daemon.sim.mllp", "--canned", "--keep", "0"]
        super().__init__("sim-mllp", [*argv, "--port", str(self.port)], workdir)

    async def answers(self) -> bool:
        return listens(self.pid, self.port)

    def received(self) -> int | None:
        """What the simulator said it received when it stopped."""
        for line in reversed(self.output(2000).splitlines()):
            if "stopped after" in line:
                return int(line.split("stopped after", 1)[1].split()[0])
        return None


# --- CPU accounting ------------------------------------------------------------------------


def stat_cpu(path: Path) -> float | None:
    """CPU seconds (user + system) from a /proc stat file; None if unreadable."""
    try:
        after_name = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(after_name[11]) + int(after_name[12])) / TICK


def machine_busy() -> float | None:
    """CPU seconds all cores have spent busy since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK  # all but idle and iowait


@dataclass
class CpuWatch:
    """CPU seconds used by groups of processes (or threads) between ``start`` and ``stop``."""

    groups: dict[str, list[Path]]  # name -> /proc/.../stat files
    wall: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, paths in self.groups.items():
            seconds = [stat_cpu(path) for path in paths]
            if paths and all(s is not None for s in seconds):
                out[name] = sum(s for s in seconds if s is not None)
        machine = machine_busy()
        if machine is not None:
            out["machine"] = machine
        return out

    def start(self) -> None:
        self.wall = time.monotonic()
        self.before = self._sample()

    def stop(self) -> None:
        self.wall = max(1e-9, time.monotonic() - self.wall)
        after = self._sample()
        self.used = {k: after[k] - self.before[k] for k in after if k in self.before}

    def note(self, messages: int) -> str:
        """Cores busy and CPU microseconds per message, per group."""
        if not self.used:
            return ""

        def cost(name: str) -> str:
            return f"{self.used[name] / self.wall:.2f} ({self.used[name] / messages * 1e6:.0f})"

        parts = []
        for name in self.used:
            if name in ("machine", LOOPS):
                continue
            text = f"{name} {cost(name)}"
            if name == "dispatchers" and LOOPS in self.used:
                other = self.used[name] - self.used[LOOPS]
                text += (
                    f" = event loop {cost(LOOPS)}"
                    f" + other threads {other / self.wall:.2f} ({other / messages * 1e6:.0f})"
                )
            parts.append(text)
        if "machine" in self.used:
            parts.append(f"machine {self.used['machine'] / self.wall:.2f}/{os.cpu_count()}")
        return "cores busy (CPU us/msg): " + ", ".join(parts)


def cpu_watch(
    dispatchers: Sequence[Dispatcher], peer: Child | None, servers: Sequence[int]
) -> CpuWatch:
    """The dispatchers (all threads, and the event loops alone), their store workers, the
    peer, the database server's processes and the bench itself."""
    proc = Path("/proc")
    pids = [d.pid for d in dispatchers]
    groups = {
        "dispatchers": [proc / str(pid) / "stat" for pid in pids],
        LOOPS: [proc / str(pid) / "task" / str(pid) / "stat" for pid in pids],
        "store workers": [proc / str(child) / "stat" for pid in pids for child in children(pid)],
    }
    if peer is not None:
        groups["sim"] = [proc / str(peer.pid) / "stat"]
    if servers:
        groups["postgres"] = [proc / str(pid) / "stat" for pid in servers]
    groups["bench"] = [proc / str(os.getpid()) / "stat"]
    return CpuWatch(groups)
