"""One outboxd host in a directory of its own: the repository's supervisord.conf
with the demo group dropped (as its header says for production), a YAML file
with this host's ``node:`` and ports, and a ``.venv`` link to the virtualenv
running outboxd. Several of them on one machine, sharing one PostgreSQL, stand
for several machines.

Ports come from the ``OUTBOXD_*_PORT`` variables the YAML reads, so a host's
processes never collide with another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ops.bench.lib.ports import free_ports as free_port

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 180.0  # seconds for every program to be ready on a loaded machine
STOPWAITSECS = 45  # supervisord.conf's longest stopwaitsecs
DEMO = re.compile(r"^\[(group:demo|program:sim-[^\]]*|program:demo-traffic)\]$")

try:  # loaded here, not in the forked child
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """SIGTERM supervisord if the process that started it dies: no host left behind."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def production_conf(numprocs: dict[str, int] | None = None) -> str:
    """The repository's supervisord.conf without the demo, each program's
    ``numprocs`` as given (the rest as the file has them)."""
    out: list[str] = []
    keep = True
    for line in (REPO / "supervisord.conf").read_text().splitlines():
        if line.startswith("["):
            keep = DEMO.match(line.strip()) is None
        if keep:
            out.append(line)
    text = "\n".join(out) + "\n"
    text = text.replace("programs=dispatcher,poller,scheduler,control", "programs=" + ",".join(
        name for name in ("dispatcher", "poller", "scheduler", "control")
        if (numprocs or {}).get(name, 1) > 0
    ))  # fmt: skip
    for program, count in (numprocs or {}).items():
        if count == 0:
            text = re.sub(rf"\n\[program:{program}\]\n.*?(?=\n\[|\Z)", "\n", text, flags=re.S)
            continue
        pattern = re.compile(rf"(\[program:{program}\][^\[]*?\nnumprocs=)\d+")
        text, n = pattern.subn(rf"\g<1>{count}", text)
        if n != 1:
            raise ValueError(f"no numprocs for [program:{program}] in supervisord.conf")
    return text


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, theirs, …), read from /proc."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        tasks = Path(f"/proc/{parent}/task")
        with contextlib.suppress(OSError):
            for task in tasks.iterdir():
                with contextlib.suppress(OSError):
                    for child in (task / "children").read_text().split():
                        found.append(int(child))
                        todo.append(int(child))
    return found


class Host:
    """A host: ``start()`` (migrate when asked, supervisord, ready), ``kill()``
    (SIGKILL supervisord and every process under it at once), ``shutdown()``."""

    PROGRAMS = ("dispatcher", "poller", "scheduler", "control")

    def __init__(
        self,
        root: Path,
        venv: Path,
        node: str,
        yaml: str,
        numprocs: dict[str, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.venv = venv
        self.node = node
        self.numprocs = {"dispatcher": 2, "poller": 1, "scheduler": 2, "control": 1}
        self.numprocs.update(numprocs or {})
        self.ports = {
            "OUTBOXD_DISPATCHER_PORT": free_port(max(1, self.numprocs["dispatcher"])),
            "OUTBOXD_POLLER_PORT": free_port(max(1, self.numprocs["poller"])),
            "OUTBOXD_SCHEDULER_PORT": free_port(max(1, self.numprocs["scheduler"])),
            "OUTBOXD_CONTROL_HEALTH_PORT": free_port(),
            "OUTBOXD_CONTROL_PORT": free_port(),
        }
        self.extra_env = {"OUTBOXD_NODE": node, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        (root / "config").mkdir(parents=True)
        (root / "var" / "log").mkdir(parents=True)
        (root / ".venv").symlink_to(venv)
        self.conf.write_text(production_conf(self.numprocs))
        self.yaml.write_text(yaml)

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def yaml(self) -> Path:
        return self.root / "config" / "outboxd.yaml"

    @property
    def logdir(self) -> Path:
        return self.root / "var" / "log"

    @property
    def programs(self) -> set[str]:
        return {
            f"outboxd:{name}-{n}" for name, count in self.numprocs.items() for n in range(count)
        }

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXD_")}
        return env | {k: str(v) for k, v in self.ports.items()} | self.extra_env

    def bin(self, tool: str) -> str:
        return str(self.root / ".venv" / "bin" / tool)

    def log(self, name: str = "supervisord", tail: int = 3000) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else f"({path}: none)"

    def logs(self, names: Iterable[str] = ("supervisord",), tail: int = 1500) -> str:
        return "".join(f"\n--- {self.node} {n}.log ---\n{self.log(n, tail)}" for n in names)

    async def run(self, *argv: str, timeout: float = 60.0) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=self.root, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"{' '.join(argv)} did not finish in {timeout:g}s") from None
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace")

    async def ctl(self, *args: str, timeout: float = 60.0) -> str:
        _, out = await self.run(self.bin("supervisorctl"), "-c", str(self.conf), *args,
                                timeout=timeout)  # fmt: skip
        return out

    async def outboxd(self, *args: str, timeout: float = 60.0) -> tuple[int, str]:
        return await self.run(self.bin("outboxd"), *args, "-c", str(self.yaml), timeout=timeout)

    async def migrate(self) -> None:
        code, out = await self.outboxd("migrate")
        if code != 0:
            raise AssertionError(f"outboxd migrate on {self.node}: {out}")

    async def start(self, wait: float = READY_TIMEOUT) -> None:
        """Start supervisord and wait until every program is ready (`outboxd
        status --wait`, as `make run` does)."""
        with (self.root / "supervisord.out").open("ab") as output:
            self.proc = await asyncio.create_subprocess_exec(
                self.bin("supervisord"), "-c", str(self.conf),
                cwd=self.root, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )  # fmt: skip
        await self.ready(wait)

    async def ready(self, wait: float = READY_TIMEOUT) -> None:
        code, out = await self.run(
            self.bin("outboxd"), "status", "-c", str(self.yaml), "--supervisor", str(self.conf),
            "--wait", f"{wait:g}", "--tail", "20", timeout=wait + 30,
        )  # fmt: skip
        if code != 0:
            raise AssertionError(f"{self.node} not ready after {wait:g}s:\n{out}{self.logs()}")

    async def status(self) -> dict[str, tuple[str, str]]:
        """``supervisorctl status`` as {name: (STATE, the rest of the line)}."""
        table = {}
        for line in (await self.ctl("status")).splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1].isupper():
                table[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        return table

    async def pid(self, program: str) -> int | None:
        state, rest = (await self.status()).get(program, ("", ""))
        match = re.search(r"pid (\d+)", rest)
        return int(match.group(1)) if state == "RUNNING" and match else None

    def kill(self) -> list[int]:
        """SIGKILL supervisord and every process under it, all at once (a host
        that loses power): the pids killed."""
        assert self.proc is not None
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return pids

    async def shutdown(self) -> None:
        """``supervisorctl shutdown`` and wait; SIGKILL what is left of this host."""
        if self.proc is None:
            return
        try:
            if self.proc.returncode is None:
                with contextlib.suppress(AssertionError):
                    await self.ctl("shutdown", timeout=15)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), STOPWAITSECS + 15)
        finally:
            if self.proc.returncode is None:
                self.kill()
                await self.proc.wait()
            self._kill_strays()

    def _kill_strays(self) -> None:
        """Any process still running from this host's directory (a store worker
        whose dispatcher was killed exits on its own; this is the backstop)."""
        marker = str(self.root).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
