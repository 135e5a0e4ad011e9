"""Starting a store worker (``daemon.store.worker``) before anything else is loaded.

A dispatcher calls ``start_worker`` as soon as it has parsed its YAML file, before
it imports its settings models, the event loop or the frame: the worker's own
imports (the store, peewee and the driver of its database's backend, and no other:
``daemon.store.drivers``) then run beside all of the daemon's. This module imports
the standard library alone, so that nothing delays that start;
``daemon.store.process.StoreProcess`` takes the worker over at its first call.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass

WORKER = "daemon.store.worker"


def worker_argv(fd: int, module: str = WORKER, backend: str | None = None) -> list[str]:
    """The command line of a worker talking over the socket ``fd``, for a database
    of ``backend`` (``sqlite``, ``postgresql``) or, with none, any."""
    # -P: the daemon's current directory is not searched first, so a ``daemon``
    # folder there cannot stand in for the installed one
    return [sys.executable, "-P", "-m", module, str(fd), *([backend] if backend else [])]


@dataclass
class Spawned:
    """A worker started before its store is opened (``start_worker``): it imports
    the store and its driver while the daemon loads the rest, and waits for the
    settings on ``sock``, the daemon's end of their socket pair."""

    process: subprocess.Popen[bytes]
    sock: socket.socket


def start_worker(backend: str | None = None) -> Spawned:
    """Start a store worker now, without an event loop, for a database of
    ``backend`` (``daemon.store.address.backend_of``; None: any); a ``StoreProcess``
    given it takes it over at its first call (or stops it, when closed first)."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            worker_argv(theirs.fileno(), backend=backend),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # signals to the daemon's group are not for it
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return Spawned(process, ours)
