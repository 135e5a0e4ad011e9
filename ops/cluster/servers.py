"""Database servers of a run's own: ``initdb`` + ``pg_ctl`` from Debian's
PostgreSQL binaries, and ``mariadb-install-db`` + ``mariadbd``, each in a
temporary directory on a free port, so that a test may stop, kill and restart
them without disturbing the machine's shared servers.

Both refuse to run as root: as root, they run as the ``postgres`` and ``mysql``
users (``runuser``), which own the directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pymysql

from ops.bench.lib.ports import free_ports as free_port

START_TIMEOUT = 60.0  # seconds a server has to answer after it is started


class ServerUnavailable(RuntimeError):
    """A server this machine cannot run (a binary or a user missing), with what to install."""


def _as_user(user: str) -> list[str]:
    """The prefix that runs a command as ``user`` when we are root (else nothing)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise ServerUnavailable(f"no user {user!r} to run the server as (we are root)") from None
    return ["runuser", "-u", user, "--"]


def _own_dir(prefix: str, user: str) -> Path:
    """A fresh directory the server's user owns (not under a root-only tmp_path)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    return root


class PostgresServer:
    """A PostgreSQL cluster of its own, trust auth on 127.0.0.1:``port``, database
    ``outboxd``; ``stop(mode)`` with ``fast`` (clients told) or ``immediate`` (a
    crash, recovered at the next start)."""

    USER = "postgres"

    def __init__(self, port: int | None = None) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise ServerUnavailable(
                "no PostgreSQL binaries under /usr/lib/postgresql/*/bin "
                "(Debian: apt-get install postgresql)"
            )
        self.bin = Path(found[-1]).parent
        self.port = port or free_port()
        self.prefix = _as_user(self.USER)
        self.root = _own_dir("outboxd-pg-", self.USER)
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/outboxd"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stdout}{result.stderr}")

    def create(self) -> PostgresServer:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
                "fsync = off\n"  # a crash of the server process loses nothing; of the OS, moot here
                "idle_in_transaction_session_timeout = '60s'\n"
                "autovacuum_naptime = '10s'\n"
            )
        self.start()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE outboxd")
        return self

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(int(START_TIMEOUT)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class MariaDbServer:
    """A MariaDB server of its own on 127.0.0.1:``port``, root without a password;
    ``kill()`` is SIGKILL (a crash: InnoDB recovers at the next ``start``)."""

    USER = "mysql"

    def __init__(self, port: int | None = None) -> None:
        self.install = shutil.which("mariadb-install-db")
        self.server = shutil.which("mariadbd") or (
            "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
        )
        if self.install is None or self.server is None:
            raise ServerUnavailable(
                "no mariadb-install-db or mariadbd (Debian: apt-get install mariadb-server)"
            )
        self.port = port or free_port()
        self.prefix = _as_user(self.USER)
        self.root = _own_dir("outboxd-mdb-", self.USER)
        self.data = self.root / "data"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def create(self) -> MariaDbServer:
        assert self.install is not None
        user = ["--user=mysql"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [self.install, "--no-defaults", f"--datadir={self.data}", *user,
             "--auth-root-authentication-method=normal", "--skip-test-db",
             "--skip-name-resolve"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db: {result.stdout}{result.stderr}")
        self.start()
        return self

    def start(self) -> None:
        assert self.server is not None
        user = ["--user=mysql"] if os.geteuid() == 0 else []
        with (self.root / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.server, "--no-defaults", f"--datadir={self.data}",
                 f"--socket={self.root}/sock", f"--port={self.port}",
                 "--bind-address=127.0.0.1", f"--pid-file={self.root}/pid",
                 "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=2",
                 "--max-connections=200", *user],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not self.running():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.proc.returncode}: see {self.root}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not answer in {START_TIMEOUT:g}s")
            time.sleep(0.2)

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        conn = pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", database=database,
            connect_timeout=3, read_timeout=30, autocommit=True, charset="utf8mb4",
        )  # fmt: skip
        with conn.cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        return conn

    def running(self) -> bool:
        try:
            self.connect().close()
            return True
        except pymysql.MySQLError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
