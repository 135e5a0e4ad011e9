"""Loopback ports for the servers a harness starts in other processes (a benchmark's
peers and roles, a soak's suite, a cluster host's programs and database servers),
which bind them seconds later. Imported as ``lib.ports`` by the scripts here, as
``ops.bench.lib.ports`` by ``ops/cluster`` and ``tests/support/ports.py`` (which
locks its ports against other test sessions too); it imports nothing of either.

Not from the kernel's ephemeral range (``ip_local_port_range``): every outgoing
connection on the machine takes its port from there, so a port found free there
by binding port 0 can be taken by a connection before its server binds it (a
program then fails "address already in use"). These come from below that range,
at random, checked free by binding them, and never twice from one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_HANDED_OUT: set[int] = set()


def below_ephemeral() -> tuple[int, int]:
    """From 20000 (above the demo's own ports) to below the ephemeral range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (20000, low - 1) if low > 21000 else (20000, 32767)


def bindable(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    low, high = below_ephemeral()
    for _ in range(10_000):
        first = random.randint(low, high - count + 1)
        ports = range(first, first + count)
        if not _HANDED_OUT.intersection(ports) and all(bindable(p) for p in ports):
            _HANDED_OUT.update(ports)
            return first
    raise RuntimeError(f"no {count} consecutive free ports from {low} to {high}")
