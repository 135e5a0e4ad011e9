"""supervisord's view of the suite, over its XML-RPC interface (on its unix socket,
or an inet_http_server): every program's state, and starting, stopping and
restarting one by name.

The client is synchronous (``xmlrpc.client`` with supervisor's own
``SupervisorTransport``); async code calls it through ``asyncio.to_thread`` (see
``daemon.suite.readiness``). Each call opens and closes its connection and waits at most
``timeout`` seconds, so a client may be kept and shared between threads.

Where supervisord is: ``supervisor_address`` reads ``--supervisor`` (a
``unix://`` or ``http://`` URL, a socket's path, or a supervisord.conf, whose
``[supervisorctl] serverurl`` or ``[unix_http_server] file`` is used), else
``$OUTBOXD_SUPERVISOR``, else ``./supervisord.conf``, else ``./var/supervisor.sock``.
"""

from __future__ import annotations

import http.client
import os
import socket
import stat
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.options import UnhosedConfigParser
from supervisor.xmlrpc import Faults, SupervisorTransport

SUPERVISOR_ENV = "OUTBOXD_SUPERVISOR"
DEFAULT_CONF = "supervisord.conf"
DEFAULT_SOCKET = "var/supervisor.sock"
RPC_TIMEOUT = 5.0  # seconds one XML-RPC call may take
# seconds a start, stop or restart may take: supervisord answers once the program has
# stopped (its stopwaitsecs: 45 s for outboxd's) and started (its startsecs)
ACTION_TIMEOUT = 120.0
RUNNING = "RUNNING"
FATAL = "FATAL"


class SupervisorUnavailable(Exception):
    """supervisord does not answer (no socket, refused, timed out); the text says where."""


class SupervisorError(Exception):
    """supervisord answered with a fault (no such program, already started, …)."""

    def __init__(self, message: str, fault: int) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True)
class Address:
    url: str  # unix:///abs/path/supervisor.sock or http://host:port
    username: str | None = None
    password: str | None = None

    @property
    def socket_path(self) -> str | None:
        return self.url.removeprefix("unix://") if self.url.startswith("unix://") else None

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class Program:
    """One process as supervisord sees it (``getProcessInfo``)."""

    group: str
    name: str  # e.g. dispatcher-0 (supervisord's process_name)
    state: str  # STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN
    description: str  # supervisord's: "pid 12, uptime 0:01:02", "Exited too quickly …"
    pid: int  # 0 when not running
    exitstatus: int  # the last exit's code
    uptime: int | None  # seconds since start, when running
    spawnerr: str  # why it could not be spawned, if so
    logfile: str  # its stdout log ("" when none)
    stderr_logfile: str

    @property
    def fullname(self) -> str:
        """``group:name``, what supervisorctl and the XML-RPC calls take."""
        return f"{self.group}:{self.name}" if self.group != self.name else self.name

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Program:
        running = info["statename"] == RUNNING
        return cls(
            group=str(info["group"]),
            name=str(info["name"]),
            state=str(info["statename"]),
            description=str(info.get("description", "")),
            pid=int(info.get("pid") or 0),
            exitstatus=int(info.get("exitstatus") or 0),
            uptime=max(0, int(info["now"]) - int(info["start"])) if running else None,
            spawnerr=str(info.get("spawnerr") or ""),
            logfile=str(info.get("stdout_logfile") or ""),
            stderr_logfile=str(info.get("stderr_logfile") or ""),
        )


# --- where supervisord is -----------------------------------------------------------


def supervisor_address(
    value: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Address:
    """The address named by ``value`` (``--supervisor``), ``$OUTBOXD_SUPERVISOR``, or
    the defaults in the working directory. ``ValueError`` says what is wrong with it."""
    env = os.environ if environ is None else environ
    here = Path.cwd() if cwd is None else Path(cwd)
    chosen = value or env.get(SUPERVISOR_ENV)
    if not chosen:
        conf = here / DEFAULT_CONF
        if conf.is_file():
            return address_of_conf(conf, env)
        return Address(f"unix://{here / DEFAULT_SOCKET}")
    if chosen.startswith(("unix://", "http://")):
        if chosen.startswith("unix://") and not chosen.removeprefix("unix://"):
            raise ValueError(f"{chosen!r}: no socket path after unix://")
        return Address(chosen)
    if "://" in chosen:
        raise ValueError(f"{chosen!r}: use unix://PATH, http://HOST:PORT, a socket or a .conf")
    path = here / chosen
    if path.is_file():  # a socket is not a regular file
        return address_of_conf(path, env)
    return Address(f"unix://{path}")


def address_of_conf(conf: Path, environ: Mapping[str, str] | None = None) -> Address:
    """Where the supervisord of this supervisord.conf listens, as supervisorctl finds it."""
    env = os.environ if environ is None else environ
    parser = UnhosedConfigParser()
    parser.expansions = {f"ENV_{k}": v for k, v in env.items()}

    def get(section: str, option: str) -> str | None:
        if not parser.has_section(section):
            return None
        found = parser.saneget(section, option, None)
        return str(found).strip() if found else None

    try:
        read = parser.read(str(conf))
        if read:
            parser.expand_here(str(conf.resolve().parent))
            username = get("supervisorctl", "username")
            password = get("supervisorctl", "password")
            url = get("supervisorctl", "serverurl")
            socket_file = get("unix_http_server", "file")
            inet = get("inet_http_server", "port")
    except Exception as exc:  # configparser's and supervisor's expansion errors
        raise ValueError(f"{conf}: {type(exc).__name__}: {exc}") from None
    if not read:
        raise ValueError(f"{conf}: cannot be read")
    if not url and socket_file:
        url = f"unix://{socket_file}"
    if not url and inet:
        host, _, number = inet.rpartition(":")
        url = f"http://{host if host not in ('', '*') else '127.0.0.1'}:{number}"
    if not url:
        raise ValueError(f"{conf}: no [unix_http_server] or [inet_http_server] to reach")
    return Address(url, username, password)


# --- the client ---------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    """supervisor's unix-socket HTTP connection, with a timeout."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class _Transport(SupervisorTransport):
    def __init__(self, address: Address, timeout: float) -> None:
        super().__init__(address.username, address.password, address.url)
        path = address.socket_path
        if path is not None:

            def connect_unix() -> http.client.HTTPConnection:
                return _UnixConnection(path, timeout)

            self._get_connection = connect_unix
        else:
            inet = self._get_connection

            def connect() -> http.client.HTTPConnection:
                conn: http.client.HTTPConnection = inet()
                conn.timeout = timeout
                return conn

            self._get_connection = connect


class Supervisor:
    """A synchronous client of one supervisord."""

    def __init__(self, address: Address, timeout: float = RPC_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout

    def _call(self, method: str, *args: object) -> Any:
        transport = _Transport(self.address, self.timeout)
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault as exc:
            raise SupervisorError(_fault_text(exc, args), exc.faultCode) from None
        except xmlrpc.client.ProtocolError as exc:
            raise SupervisorUnavailable(
                f"supervisord at {self.address} answered HTTP {exc.errcode} {exc.errmsg}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise SupervisorUnavailable(self._why_unavailable(exc)) from None
        finally:
            transport.close()

    def _why_unavailable(self, exc: BaseException) -> str:
        path = self.address.socket_path
        if path is not None:
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                return f"supervisord is not running: no socket at {path}"
            except OSError as err:
                return f"supervisord is not reachable: {path}: {err.strerror or err}"
            if not stat.S_ISSOCK(mode):
                return f"supervisord is not reachable: {path} is not a socket"
        if isinstance(exc, ConnectionRefusedError):
            return f"supervisord is not running: {self.address} refuses connections"
        if isinstance(exc, TimeoutError):
            return f"supervisord does not answer at {self.address} within {self.timeout:g}s"
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or "closed"
        return f"supervisord is not reachable at {self.address}: {why}"

    # what it runs
    def state(self) -> str:
        """supervisord's own state: RUNNING, RESTARTING, SHUTDOWN, FATAL."""
        return str(self._call("supervisor.getState")["statename"])

    def programs(self) -> list[Program]:
        """Every process supervisord knows, sorted by group and name."""
        return [Program.from_info(info) for info in self._call("supervisor.getAllProcessInfo")]

    def program(self, name: str) -> Program:
        return Program.from_info(self._call("supervisor.getProcessInfo", name))

    def tail(self, name: str, length: int = 4000) -> str:
        """The last ``length`` bytes of a process's logs (stdout, then stderr when it
        has a log of its own); "" when it has none."""
        out = str(self._call("supervisor.tailProcessStdoutLog", name, 0, length)[0])
        try:
            err = str(self._call("supervisor.tailProcessStderrLog", name, 0, length)[0])
        except SupervisorError:
            err = ""
        return out + err

    # what an operator does (each waits until supervisord has done it)
    def start(self, name: str) -> None:
        self._call("supervisor.startProcess", name, True)

    def stop(self, name: str) -> None:
        self._call("supervisor.stopProcess", name, True)

    def restart(self, name: str) -> None:
        """Stop (if running) then start, as ``supervisorctl restart``."""
        try:
            self.stop(name)
        except SupervisorError as exc:
            if exc.fault != Faults.NOT_RUNNING:
                raise
        self.start(name)


def _fault_text(exc: xmlrpc.client.Fault, args: tuple[object, ...]) -> str:
    name = str(args[0]) if args else ""
    known = {
        Faults.BAD_NAME: f"no program named {name!r}",
        Faults.ALREADY_STARTED: f"{name} is already started",
        Faults.NOT_RUNNING: f"{name} is not running",
        Faults.SPAWN_ERROR: f"{name} could not be spawned",
        Faults.ABNORMAL_TERMINATION: f"{name} ended abnormally",
        Faults.SHUTDOWN_STATE: "supervisord is shutting down",
    }
    return known.get(exc.faultCode, f"supervisord: {exc.faultString}")


def last_lines(text: str, count: int) -> list[str]:
    """The last ``count`` lines of a log tail."""
    return text.splitlines()[-count:] if count > 0 else []
