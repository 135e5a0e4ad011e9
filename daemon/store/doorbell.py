"""Wake-ups for idle dispatchers on SQLite: PostgreSQL's NOTIFY, on one machine.

A dispatcher listening binds a Unix datagram socket in the database's doorbell
folder (the file's real path with ``-doorbell`` added, made 0700 like the file:
``daemon.domain.files``). A store that commits messages due now sends the
channels' names, one datagram per listener, once the transaction has committed;
the listener wakes those channels' loops at once, so they can poll seldom. A
datagram that is lost costs only time: the loops still poll once a second.

- A socket whose listener is gone (a killed process) refuses the datagram: the
  ringing store removes its file.
- A listener whose queue is full is awake already: the datagram is dropped.
- A socket is bound and rung through the folder's descriptor
  (``/proc/self/fd/N/NAME``), once the folder open is found fit: a path that names
  another folder by then is not followed, and a folder's path may be longer than a
  socket's address may be (``MAX_ADDRESS``). Without ``/proc``, by its path, where
  that is short enough; a longer one has no doorbell, and its dispatchers poll as
  often as they would without one.
- Only the folder's owner (and root) can ring: a command run as another user
  wakes nothing, and its messages wait for the next poll. A dispatcher run as
  another account than the database file's owner does not listen (it would make
  a folder that the owner's dispatchers must refuse): its loops poll often.
- While a dispatcher's listener is not listening (a folder refused, a socket that
  failed), its loops poll every 5 to 50 ms, as they would with no doorbell.
- A folder that is not a directory of the database file's owner, or that others may
  write in, is neither listened in nor rung: a socket planted there would hear the
  channels' names, or stand in for a dispatcher's.

The standard library alone: a dispatcher whose store work runs in a worker
process listens without loading the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable

from daemon.domain.files import PRIVATE_DIR
from daemon.resilience.backoff import Backoff

log = logging.getLogger("outboxd.doorbell")

FOLDER_SUFFIX = "-doorbell"
SOCKET_SUFFIX = ".sock"
MAX_ADDRESS = 100  # bytes of a socket's path, at most (the kernel's limit is 107)
NAME_LENGTH = len(f"{2**22}-{'0' * 8}{SOCKET_SUFFIX}")  # a listener's file name, at most
CHECK_EVERY = 30.0  # seconds between checks that the listener's file is still there
MAX_DATAGRAM = 65536
PROC_FDS = "/proc/self/fd"


def folder_of(database_path: str) -> str | None:
    """The doorbell folder of a SQLite file (its real path, so that every process
    finds the same folder however it names the file); None where a socket in it
    cannot be reached."""
    folder = os.path.realpath(database_path) + FOLDER_SUFFIX
    if _has_proc() or _fits(folder, "x" * NAME_LENGTH):
        return folder
    return None


def listener_folder(database_path: str) -> str | None:
    """The doorbell folder a dispatcher listens in: ``folder_of``, where this process
    runs as the database file's owner (a dispatcher run as another account, root
    say, would make a folder that the owner's dispatchers must refuse); None where
    it may not, and its loops poll often."""
    try:
        owner = os.stat(database_path).st_uid
    except OSError:
        return None
    return folder_of(database_path) if owner == os.geteuid() else None


def _fits(folder: str, name: str) -> bool:
    return len(os.fsencode(folder)) + 1 + len(os.fsencode(name)) <= MAX_ADDRESS


def _open(folder: str) -> int:
    """The folder open (a descriptor to close), once it is found fit to use; else
    ``PermissionError`` saying why (``FileNotFoundError`` where it is missing)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        found = os.fstat(fd)
        if found.st_mode & 0o022:
            raise PermissionError(f"{folder} is writable by others than its owner")
        owner = os.stat(folder.removesuffix(FOLDER_SUFFIX)).st_uid
        if found.st_uid != owner:
            raise PermissionError(f"{folder} is not owned by the database file's owner")
    except OSError:
        os.close(fd)
        raise
    return fd


def _address(folder: str, folder_fd: int, name: str) -> str:
    """The path a socket ``name`` in ``folder`` is bound or sent to: through
    ``folder_fd``, the folder open and found fit (not whatever its path names by
    then, and short whatever the folder's path); without ``/proc``, its own."""
    if _has_proc():
        return f"{PROC_FDS}/{folder_fd}/{name}"
    return os.path.join(folder, name)


@functools.cache
def _has_proc() -> bool:
    return os.path.isdir(PROC_FDS)


class Bell:
    """The ringing side, in every process that writes messages."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def ring(self, channels: Iterable[str]) -> None:
        """Send ``channels`` to every listener in the folder; never raises."""
        names = "\n".join(sorted(set(channels)))
        if not names:
            return
        try:
            fd = _open(self.folder)
        except OSError:  # no dispatcher has listened here (or the folder is not fit)
            return
        try:
            datagram = names.encode()
            for entry in os.listdir(fd):
                if entry.endswith(SOCKET_SUFFIX):
                    self._send(datagram, fd, entry)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _send(self, datagram: bytes, fd: int, name: str) -> None:
        try:
            self._sock.sendto(datagram, _address(self.folder, fd, name))
        except ConnectionRefusedError:  # its listener is gone: nobody will read it again
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=fd)
        except OSError:  # its queue is full (it is awake), or it went away meanwhile
            pass

    def close(self) -> None:
        self._sock.close()


def _bind(folder: str) -> tuple[socket.socket, str]:
    """A listener's socket, bound in ``folder`` (made 0700 if missing), and the
    path of its file."""
    os.makedirs(folder, mode=PRIVATE_DIR, exist_ok=True)
    name = f"{os.getpid()}-{secrets.token_hex(4)}{SOCKET_SUFFIX}"
    fd = _open(folder)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(_address(folder, fd, name))
    except OSError:
        sock.close()
        raise
    finally:
        os.close(fd)
    return sock, os.path.join(folder, name)


async def listen(
    folder: str, ring: Callable[[str], None], listening: Callable[[bool], None] = lambda _: None
) -> None:
    """Call ``ring(channel)`` for every channel a store rings for, forever: binds
    again when the socket cannot be made, fails, or its file was removed;
    ``listening`` says when it listens and when it no longer does."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(0.5)
    while True:
        try:
            sock, path = _bind(folder)
        except OSError as exc:
            await _unavailable(backoff, folder, exc)
            continue
        log.info("listening for the doorbell", extra={"socket": path})
        listening(True)
        failed: OSError | None = None
        try:
            while True:
                try:
                    datagram = await asyncio.wait_for(
                        loop.sock_recv(sock, MAX_DATAGRAM), CHECK_EVERY
                    )
                except TimeoutError:  # a quiet while: is the socket still to be found?
                    if not os.path.exists(path):
                        break
                    backoff.reset()  # listened a while without a fault
                    continue
                backoff.reset()
                for channel in datagram.decode("utf-8", "replace").split("\n"):
                    if channel:
                        ring(channel)
            log.warning("doorbell socket removed; listening again", extra={"socket": path})
        except OSError as exc:
            failed = exc
        finally:
            listening(False)
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        if failed is not None:
            await _unavailable(backoff, folder, failed)


async def _unavailable(backoff: Backoff, folder: str, exc: OSError) -> None:
    delay = backoff.next()
    log.warning(
        "doorbell unavailable; polling until it is back",
        extra={"folder": folder, "error": exc.strerror or str(exc), "retry_in": delay},
    )
    await asyncio.sleep(delay)
