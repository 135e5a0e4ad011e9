"""Ports for the servers the tests start in other processes (a role's /healthz,
the control API, the suite's simulators), which bind them seconds later.

A port is picked free and then given up until that process binds it, so it
must not be one anybody else is handed meanwhile:

- not from the kernel's ephemeral range (``ip_local_port_range``), where every
  ``bind(("", 0))`` and every outgoing connection on the machine takes its
  ports (Linux gives the odd ones to ``bind`` and the even ones to ``connect``):
  these come from ``RANGE``, below it;
- not one another test session on the machine holds: each port handed out is
  locked (``flock`` on a file in the temp directory) until this process ends;
- not one this process handed out before, and checked free by binding it.

A server in this process binds port 0 itself and reads the port from its socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import tempfile
from pathlib import Path

from ops.bench.lib.ports import below_ephemeral, bindable

LOCKS = Path(tempfile.gettempdir()) / "outboxd-test-ports"
RANGE = below_ephemeral()  # from 20000 to below the ephemeral range
_HANDED_OUT: set[int] = set()
_HELD: dict[int, int] = {}  # port -> the descriptor of its lock file, held until exit


def _lock(port: int) -> bool:
    """Lock the port against other test sessions on this machine (kept until exit)."""
    if not LOCKS.is_dir():
        LOCKS.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            LOCKS.chmod(0o1777)  # shared by every user's sessions, as /tmp is
    fd = os.open(LOCKS / str(port), os.O_CREAT | os.O_RDONLY, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _HELD[port] = fd
    return True


def _take(ports: list[int]) -> bool:
    if any(p in _HANDED_OUT or p > RANGE[1] for p in ports):
        return False
    if not all(bindable(p) for p in ports):
        return False
    locked = [p for p in ports if _lock(p)]
    if len(locked) < len(ports):
        for port in locked:
            os.close(_HELD.pop(port))
        return False
    _HANDED_OUT.update(ports)
    return True


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (a role's processes 0, 1, …)."""
    for _ in range(1000):
        base = random.randint(RANGE[0], RANGE[1] - count + 1)
        if _take([base + i for i in range(count)]):
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {RANGE[0]}-{RANGE[1]}")


def free_port() -> int:
    """A free port, never one handed out before here or held by another test session."""
    return free_ports(1)


def free_port_pair() -> int:
    """A port p with p and p + 1 free: the health ports of process 0 and 1 of a role."""
    return free_ports(2)
