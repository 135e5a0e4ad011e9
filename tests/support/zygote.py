"""Role processes forked from an interpreter that has imported outboxd already.

``python -m daemon run ROLE`` spends most of its start on imports (half a second of
CPU, several seconds on a loaded machine), and the tests start well over a hundred
role processes. The zygote, one per test process, imports what a role imports
once; each start is then a fork of it: a process of its own (its own pid, session
and process group, working directory, environment and umask, standard output and
error into the given log) that runs ``daemon.cli.main(argv)`` as ``python -m
daemon`` does, exit handlers included, and whose end (its exit code, or -N for
signal N) comes back to the test. A dispatcher's store worker, exec'd by a
dispatcher that was exec'd, is forked from the dispatcher here (``_forked_worker``):
still a process of its own on a socket pair. What exec and the imports themselves
do (the console script, what a role loads, how fast it comes up, the worker's own
start) is tested where real processes are started: under supervisord
(``tests/e2e``), ``test_startup.py``, ``test_layers.py``, ``test_async_store.py``
and one dispatcher of ``test_dispatcher.py``.

The zygote speaks JSON lines: a request ``{"argv", "cwd", "env", "umask", "stdin",
"stdout", "stderr"}`` (the three as paths; no stdin is ``/dev/null``)
on its standard input is answered ``{"pid": N}`` on its standard output, and each
child's end ``{"exit": N, "code": C}``. It is single-threaded (a fork copies only
the thread that forks), and when its standard input closes (the test process is
gone) it kills what it started and exits.

    python -m tests.support.zygote   (the server; ``spawn`` starts it)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# what the roles import (``daemon.cli.run`` and each role's module): loaded once
PRELOAD = (
    "daemon.cli",
    "daemon.cli.parser",
    "daemon.cli.run",
    "daemon.config.loader",
    "daemon.runtime.frame",
    "daemon.store.spawn",
    "daemon.store.sync",
    "daemon.store.worker",
    "daemon.roles.dispatcher",
    "daemon.roles.poller",
    "daemon.roles.scheduler",
    "daemon.api.role",
    "uvloop",
)


# --- the server --------------------------------------------------------------------


def _send(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _child(request: dict[str, Any], inherited: list[int]) -> None:  # pragma: no cover
    """In the forked child: become the process the request describes, run the
    command, exit as the interpreter would."""
    code = 1
    try:
        for fd in inherited:  # the zygote's own descriptors
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        os.umask(request["umask"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in enumerate((request["stdin"] or os.devnull, request["stdout"],
                                   request["stderr"])):  # fmt: skip
            flags = os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_APPEND | os.O_CREAT
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        # as the interpreter sets them up when they are not a terminal
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(  # noqa: SIM115
            2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        sys.argv = [str(ROOT / "daemon" / "__main__.py"), *request["argv"]]
        import daemon.store.spawn

        daemon.store.spawn.start_worker = _forked_worker  # type: ignore[assignment]
        from daemon.cli import main

        try:
            code = main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        # what the interpreter does at its end: wait for threads, run exit handlers
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code & 0xFF if code >= 0 else 1)


class _ForkedPopen(subprocess.Popen[bytes]):
    """A ``Popen`` for a child this process forked: waited for, polled and
    signalled as one it had exec'd."""

    def __init__(self, pid: int) -> None:  # no super().__init__(): nothing to start
        self.args = ["store worker"]
        self.pid = pid
        self.returncode = None
        self.stdin = self.stdout = self.stderr = None
        self._waitpid_lock = threading.Lock()
        self._child_created = True
        self._sigint_wait_secs = 0.25
        self._communication_started = False
        self._input = None
        self._closed_child_pipe_fds = True


def _forked_worker(backend: str | None = None) -> Any:  # pragma: no cover
    """``daemon.store.spawn.start_worker`` in a child of the zygote: the store
    worker forked from the role, which has the store imported already, instead of
    exec'd (``python -P -m daemon.store.worker``) to import it again. As exec'd, it
    runs in a session of its own with nothing of its parent's open but its end of
    the socket pair and the standard output and error, and ignores SIGTERM and
    SIGINT; what exec and its imports do is tested in ``test_async_store.py``."""
    from daemon.store import worker
    from daemon.store.spawn import Spawned

    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            keep = theirs.fileno()
            for name in os.listdir("/proc/self/fd"):
                if int(name) > 2 and int(name) != keep:
                    with contextlib.suppress(OSError):
                        os.close(int(name))
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            code = worker.run(theirs, backend)
        finally:
            os._exit(code)
    theirs.close()
    return Spawned(_ForkedPopen(pid), ours)


def serve() -> None:  # pragma: no cover - runs in the zygote's own process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C ends the tests; their end, this
    for name in PRELOAD:
        importlib.import_module(name)
    # the settings' validator of every kind (every kind's module with it), built here
    # once: a child validates its file with it (``config.settings.model_for``)
    from daemon.config.settings import every_kind

    every_kind().model_rebuild()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "request")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    children: set[int] = set()
    pending = b""
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "child":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                continue
            data = os.read(0, 65536)
            if not data:  # the test process is gone: so is what it started
                for pid in children:
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    _child(json.loads(line), [wake_r, wake_w, selector.fileno()])
                children.add(pid)
                _send({"pid": pid})
        while children:  # every child that has ended, each reported once
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            _send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


# --- the test process's side -------------------------------------------------------


class Zygote:
    """The server, started at the first ``spawn`` of a test process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.zygote"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lock = threading.Lock()
        self.pids: list[int] = []
        self.started = threading.Condition()
        self.codes: dict[int, int] = {}
        threading.Thread(target=self._read, name="zygote", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self.started:
                if "pid" in message:
                    self.pids.append(message["pid"])
                else:
                    self.codes[message["exit"]] = message["code"]
                self.started.notify_all()
        with self.started:  # the zygote is gone: nothing more will end
            self.pids.append(-1)
            self.started.notify_all()

    def fork(self, argv: list[str], cwd: Path, env: dict[str, str], std: list[str | None]) -> int:
        mask = os.umask(0o077)
        os.umask(mask)
        request = {"argv": argv, "cwd": str(cwd), "env": env, "umask": mask}
        request |= dict(zip(("stdin", "stdout", "stderr"), std, strict=True))
        with self.lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            with self.started:
                if not self.started.wait_for(lambda: self.pids, timeout=60):
                    raise RuntimeError("the zygote did not fork in 60 s")
                pid = self.pids.pop(0)
        if pid < 0:
            raise RuntimeError(f"the zygote exited {self.proc.poll()}")
        return pid

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


_zygote: Zygote | None = None


class ForkedProcess:
    """A child of the zygote, with the parts of ``asyncio.subprocess.Process`` the
    tests use: ``pid``, ``returncode``, ``wait()``, ``send_signal``, ``terminate``,
    ``kill``."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid

    @property
    def returncode(self) -> int | None:
        return self.zygote.codes.get(self.pid)

    async def wait(self) -> int:
        while (code := self.returncode) is None:
            await asyncio.sleep(0.02)
        return code

    def wait_blocking(self, timeout: float) -> int:
        """Its exit code, waiting at most ``timeout`` seconds (then SIGKILL, and
        ``TimeoutError``)."""
        with self.zygote.started:
            if self.zygote.started.wait_for(lambda: self.returncode is not None, timeout):
                return self.zygote.codes[self.pid]
        self.kill()
        raise TimeoutError(f"pid {self.pid} did not end in {timeout:g}s")

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def spawn(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdout: Path,
    stderr: Path | None = None,
    stdin: Path | None = None,
) -> ForkedProcess:
    """``python -m daemon ARGV`` in ``cwd`` with ``env`` in a session of its own,
    its output appended to ``stdout`` (and ``stderr``, or the same file), its input
    ``stdin`` (or nothing): forked from this test process's zygote."""
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = Zygote()
        atexit.register(_zygote.close)
    std = [str(p) if p is not None else None for p in (stdin, stdout, stderr or stdout)]
    return ForkedProcess(_zygote, _zygote.fork(argv, cwd, env, std))


if __name__ == "__main__":
    serve()
