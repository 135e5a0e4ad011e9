"""The suite the soak runs: the repository's own supervisord.conf (its ``outboxd``
group as production has it: 2 dispatchers, a poller, 2 schedulers, the control role)
with the demo group replaced by the soak's peers, and a YAML file of the soak's, all in
a directory of its own (``%(here)s``: its var/, socket, logs and SQLite files).

The peers: the MLLP simulator answering AA at once (``--canned``), the HTTP sink, the
BPJS Antrean simulator; the hospital is written by the soak itself
(``soakrun.hospital``) into the Khanza-like file the poller reads.
"""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lib.processes import free_ports

from daemon.suite.supervisor import (
    Program,
    Supervisor,
    SupervisorError,
    SupervisorUnavailable,
    address_of_conf,
)

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # not resolved: a venv's python is a symlink
OUTBOXD = "outboxd"  # supervisord's group of outboxd's own programs
PEERS = "peers"  # the soak's group of simulators
SIMULATORS = "sim-"  # how their programs' names begin
BPJS_CONS_ID, BPJS_SECRET, BPJS_USER_KEY = "10001", "soak-secret", "soak-user-key"
NOTIFY_SECRET = "whsec_c29hay1ub3RpZnktc2VjcmV0LWtleQ=="
TIMEZONE = "Asia/Jakarta"
START_TIMEOUT = 180.0  # seconds for every program to be ready on a loaded machine
STOP_TIMEOUT = 120.0  # supervisord drains every program (stopwaitsecs 45) then exits


@dataclass(frozen=True)
class Plan:
    """What the YAML file says of time: the simulated day, the purge's retention."""

    day: float  # seconds of a simulated day: the purge's and the report's interval
    keep: float  # seconds an ended message (a run, a notification) is kept
    heartbeat: float = 5.0  # seconds between the http job's fires


@dataclass
class Ports:
    mllp: int = field(default_factory=free_ports)
    http: int = field(default_factory=free_ports)
    bpjs: int = field(default_factory=free_ports)
    control: int = field(default_factory=free_ports)
    dispatcher: int = field(default_factory=lambda: free_ports(2))
    poller: int = field(default_factory=free_ports)
    scheduler: int = field(default_factory=lambda: free_ports(2))
    control_health: int = field(default_factory=free_ports)


def seconds(value: float) -> str:
    return f"{max(1, round(value))}s"


def config(database: str, khanza: Path, ports: Ports, plan: Plan) -> dict[str, Any]:
    """The soak's YAML file, as a mapping."""
    keep = seconds(plan.keep)
    http = f"http://127.0.0.1:{ports.http}"
    return {
        "database": database,
        "timezone": TIMEZONE,
        "channels": {
            "hie": {
                "kind": "mllp",
                "host": "127.0.0.1",
                "port": ports.mllp,
                "concurrency": 4,
                "response_timeout": "10s",
            },
            "webhook": {"kind": "http", "url": f"{http}/hook", "concurrency": 4},
            "bpjs": {
                "kind": "bpjs_antrean",
                "base_url": f"http://127.0.0.1:{ports.bpjs}/antreanrs",
                "cons_id": BPJS_CONS_ID,
                "secret": BPJS_SECRET,
                "user_key": BPJS_USER_KEY,
                "concurrency": 4,
                "ordered": True,
                "predecessor_wait": "2s",
            },
        },
        "sources": {
            "hospital": {
                "kind": "khanza",
                "dsn": f"sqlite:///{khanza}",
                "channel": "bpjs",
                "interval": "2s",
                "queries": {  # check-in and registration as tasks 1 and 2, as the demo
                    "1": "SELECT validasi FROM referensi_mobilejkn_bpjs"
                    " WHERE nobooking = %(kodebooking)s",
                    "2": "SELECT tgl_registrasi, jam_reg FROM reg_periksa"
                    " WHERE no_rawat = %(no_rawat)s",
                },
            }
        },
        "schedules": {
            # a simulated day's purge, keeping what ended for `keep`
            "purge": {
                "every": seconds(plan.day),
                "job": "purge",
                "options": {
                    "messages_older_than": keep,
                    "runs_older_than": keep,
                    "notifications_older_than": keep,
                    "receipts_older_than": keep,
                },
            },
            "daily-report": {
                "every": seconds(plan.day),
                "job": "report",
                "options": {"notify": ["ops-hook"], "window": seconds(plan.day)},
            },
            "heartbeat": {
                "every": seconds(plan.heartbeat),
                "job": "http",
                "options": {"url": f"{http}/heartbeat", "method": "POST"},
            },
        },
        "notify": {
            "ops-hook": {"kind": "webhook", "url": f"{http}/notify", "secret": NOTIFY_SECRET}
        },
        "roles": {
            "dispatcher": {"base_port": ports.dispatcher},
            "poller": {"base_port": ports.poller},
            "scheduler": {"base_port": ports.scheduler},
            "control": {"base_port": ports.control_health},
        },
        "control": {"host": "127.0.0.1", "port": ports.control},
    }


def supervisord_conf(ports: Ports) -> configparser.RawConfigParser:
    """The repository's supervisord.conf, its demo group replaced by the soak's peers."""
    conf = configparser.RawConfigParser()
    conf.read(ROOT / "supervisord.conf")
    for section in list(conf.sections()):
        if section == "group:demo" or (
            section.startswith("program:") and section.split(":", 1)[1].startswith(("sim-", "demo"))
        ):
            conf.remove_section(section)
    python = "%(here)s/.venv/bin/python"
    yaml_file = "%(here)s/config/outboxd.yaml"
    peers = {
        "sim-mllp": f"{python} -m daemon.sim.mllp --canned --keep 0 --port {ports.mllp}"
        " --log-level WARNING",
        "sim-http": f"{python} -m daemon.sim.run http -c {yaml_file} --channel webhook --keep 0",
        "sim-bpjs": f"{python} -m daemon.sim.run bpjs -c {yaml_file} --channel bpjs --keep 0",
    }
    conf[f"group:{PEERS}"] = {"programs": ",".join(peers)}
    for name, command in peers.items():
        conf[f"program:{name}"] = {
            "command": command,
            "directory": "%(here)s",
            "priority": "100",
            "startsecs": "2",
            "autorestart": "true",
            "stopsignal": "TERM",
            "stopwaitsecs": "10",
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": "%(here)s/var/log/%(program_name)s.log",
            "stdout_logfile_maxbytes": "10MB",
            "stdout_logfile_backups": "2",
        }
    return conf


class Suite:
    """One supervisord running the soak's programs from ``root``."""

    def __init__(self, root: Path, database: str, plan: Plan) -> None:
        self.root = root
        self.ports = Ports()
        self.khanza = root / "var" / "khanza.db"
        self.yaml = root / "config" / "outboxd.yaml"
        self.conf = root / "supervisord.conf"
        (root / "config").mkdir(parents=True, exist_ok=True)
        (root / "var" / "log").mkdir(parents=True, exist_ok=True)
        link = root / ".venv"
        if not link.exists():
            link.symlink_to(VENV)
        self.settings = config(database, self.khanza, self.ports, plan)
        self.yaml.write_text(yaml.safe_dump(self.settings, sort_keys=False))
        with self.conf.open("w") as out:
            supervisord_conf(self.ports).write(out)
        self.proc: subprocess.Popen[bytes] | None = None
        self.supervisor = Supervisor(address_of_conf(self.conf))

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.control}"

    def outboxd(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV / "bin" / "outboxd"), *args, "-c", str(self.yaml)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> None:
        """supervisord in the background, then ``outboxd status --wait`` as ``make
        run`` waits: every program RUNNING and every outboxd process's /healthz 200."""
        with (self.root / "var" / "log" / "supervisord.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [str(VENV / "bin" / "supervisord"), "-c", str(self.conf)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        done = self.outboxd(
            "status", "--supervisor", str(self.conf), "--wait", f"{START_TIMEOUT:g}",
            timeout=START_TIMEOUT + 60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the suite did not come up:\n{done.stdout}{done.stderr}")

    def programs(self) -> list[Program]:
        try:
            return self.supervisor.programs()
        except (SupervisorUnavailable, SupervisorError):
            return []

    def stop(self) -> dict[str, int]:
        """SIGTERM to supervisord (each program drains first); each program's exit
        code as supervisord saw it, read before it went."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        # outboxd's programs first, while their peers still answer
        programs = sorted(self.programs(), key=lambda p: p.group != OUTBOXD)
        patient = Supervisor(self.supervisor.address, timeout=STOP_TIMEOUT)
        codes: dict[str, int] = {}
        for program in programs:
            try:
                patient.stop(program.fullname)
                codes[program.fullname] = patient.program(program.fullname).exitstatus
            except (SupervisorUnavailable, SupervisorError):
                codes[program.fullname] = -1
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return codes

    def kill(self) -> None:
        """However the soak ends: nothing it started is left running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
