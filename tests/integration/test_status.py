"""``outboxd status`` against a real supervisord (the venv's) running real outboxd
pollers and small stand-ins, each in a temporary directory of its own; and
``daemon.suite.supervisor``' start, stop and restart. The command runs in this
process (the ``cli`` fixture) but where it waits for supervisord to come up, which
is a real process beside it, as ``make run`` has it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.suite.supervisor import Supervisor, SupervisorError, supervisor_address
from tests.support.cli import Cli, Result
from tests.support.ports import free_port, free_port_pair
from tests.support.processes import ROOT, gone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]  # supervisord and its programs

BIN = Path(sys.executable).parent
SUPERVISORD = BIN / "supervisord"
PYTHON = sys.executable

HEADER = """
[unix_http_server]
file=%(here)s/supervisor.sock

[supervisord]
nodaemon=true
directory=%(here)s
logfile=%(here)s/supervisord.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/supervisor.sock
"""

# startsecs stays above the time a poller takes to find its port in use (under a
# second), so that one is FATAL rather than RUNNING and then EXITED
POLLERS = """
[group:outboxd]
programs=poller

[program:poller]
command={python} -m daemon run poller -c %(here)s/outboxd.yaml --process-num %(process_num)d
process_name=%(program_name)s-%(process_num)d
numprocs=2
directory=%(here)s
startsecs=3
startretries=0
autorestart=false
stopwaitsecs=10
redirect_stderr=true
stdout_logfile=%(here)s/%(program_name)s-%(process_num)d.log
"""

SLEEPER = """
[program:sleeper]
command={python} -c "import time; time.sleep(3600)"
startsecs=0
stopwaitsecs=2
stdout_logfile=%(here)s/sleeper.log
redirect_stderr=true
"""

# startsecs well above the time it takes to exit, however loaded the machine: an exit
# within startsecs with no retries left is FATAL; one after it would be EXITED
CRASHER = """
[program:crasher]
command={python} -c "import sys; print('crasher: no luck today', flush=True); sys.exit(3)"
startsecs=30
startretries=0
autorestart=false
stdout_logfile=%(here)s/crasher.log
redirect_stderr=true
"""

# an outboxd-named program that is not outboxd: serves a /healthz of its choosing
STAND_IN = """
[program:scheduler-0]
command={python} %(here)s/stand_in.py {port}
startsecs=0
stopwaitsecs=2
stdout_logfile=%(here)s/scheduler-0.log
redirect_stderr=true
"""

STAND_IN_PY = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

BODY = json.dumps({"status": "unhealthy", "role": "scheduler", "process": 0,
                   "problems": ["database: OperationalError: disk I/O error"]}).encode()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

YAML = """
database: sqlite:///{db}
roles:
  poller: {{base_port: {poller}, drain_timeout: 2s}}
  scheduler: {{base_port: {scheduler}}}
"""


class Suite:
    """A supervisord of its own in a short temporary directory (AF_UNIX paths are
    short), with the programs given."""

    def __init__(self, *programs: str, cli: Cli | None = None) -> None:
        self.cli = cli  # what runs ``outboxd status`` (tests of other faces need none)
        self.root = Path(tempfile.mkdtemp(prefix="outboxd-st-"))
        self.poller_port = free_port_pair()
        self.scheduler_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        db = self.root / "o.db"
        (self.root / "outboxd.yaml").write_text(
            YAML.format(db=db, poller=self.poller_port, scheduler=self.scheduler_port)
        )
        database = open_database(DatabaseSettings(url=f"sqlite:///{db}"))
        migrate(database)
        database.close()
        (self.root / "stand_in.py").write_text(STAND_IN_PY)
        text = HEADER + "".join(programs)
        self.conf.write_text(text.replace("{python}", PYTHON).replace(
            "{port}", str(self.scheduler_port)
        ))  # fmt: skip

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def yaml(self) -> Path:
        return self.root / "outboxd.yaml"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXD_")}
        return env | {"PYTHONPATH": str(ROOT)}

    def start(self) -> None:
        with (self.root / "supervisord.out").open("wb") as out:
            self.proc = subprocess.Popen(
                [str(SUPERVISORD), "-c", str(self.conf)],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def status(self, *args: str) -> Result:
        """``outboxd status -c outboxd.yaml ARGS`` run in the suite's directory."""
        assert self.cli is not None, "Suite(..., cli=cli) runs outboxd status"
        return self.cli("status", "-c", str(self.yaml), *args, cwd=self.root)

    def supervisor(self) -> Supervisor:
        return Supervisor(supervisor_address(str(self.conf)))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running(*programs: str, cli: Cli | None = None) -> Iterator[Suite]:
    suite = Suite(*programs, cli=cli)
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()


def table(out: str) -> dict[str, list[str]]:
    """The status table as {program: [state, pid, uptime, health…]}."""
    rows = {}
    for line in out.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) >= 4 and parts[1].isupper():
            rows[parts[0]] = parts[1:]
    return rows


# --- ready ----------------------------------------------------------------------------


def test_every_program_ready_is_0_and_wait_covers_supervisord_starting(cli: Cli) -> None:
    suite = Suite(POLLERS, SLEEPER, cli=cli)
    try:
        # asked before supervisord runs: --wait keeps asking (what `make run` does)
        waiting = subprocess.Popen(
            [PYTHON, "-m", "daemon", "status", "-c", str(suite.yaml), "--wait", "40"],
            cwd=suite.root, env=suite.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        time.sleep(0.5)
        suite.start()
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, out + err
        rows = table(out)
        assert set(rows) == {"outboxd:poller-0", "outboxd:poller-1", "sleeper"}, out
        assert rows["outboxd:poller-0"][0] == "RUNNING"
        assert rows["outboxd:poller-0"][-1] == "ready"
        assert rows["outboxd:poller-1"][-1] == "ready"
        assert rows["sleeper"][-1] == "-"  # not an outboxd role: no health check
        assert out.splitlines()[-1] == "ready: 3 programs running, 2 healthy"

        done = suite.status("--json")
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert body["ready"] is True and body["not_ready"] == []
        assert body["supervisor"] == f"unix://{suite.root}/supervisor.sock"
        programs = {p["name"]: p for p in body["programs"]}
        poller = programs["outboxd:poller-1"]
        assert poller["group"] == "outboxd" and poller["program"] == "poller-1"
        assert poller["state"] == "RUNNING" and poller["pid"] > 0
        assert poller["role"] == "poller" and poller["process"] == 1
        assert poller["health"]["url"] == f"http://127.0.0.1:{suite.poller_port + 1}/healthz"
        assert poller["health"]["status"] == 200
        assert poller["health"]["body"]["status"] == "ok"
        assert poller["ready"] is True and poller["problems"] == []
        assert programs["sleeper"]["health"] is None and programs["sleeper"]["role"] is None
    finally:
        suite.stop()


# --- not ready ------------------------------------------------------------------------


def test_a_stopped_program_is_named_and_start_stop_restart_work(cli: Cli) -> None:
    with running(POLLERS, SLEEPER, cli=cli) as suite:
        assert suite.status("--wait", "40").returncode == 0
        client = suite.supervisor()
        client.stop("sleeper")
        stopped = suite.status()
        assert stopped.returncode == 1, stopped.stdout
        assert table(stopped.stdout)["sleeper"][0] == "STOPPED"
        assert stopped.stdout.splitlines()[-1] == "not ready: sleeper (STOPPED)"

        client.start("sleeper")
        assert client.program("sleeper").state == "RUNNING"
        pid = client.program("outboxd:poller-0").pid
        client.restart("outboxd:poller-0")
        assert client.program("outboxd:poller-0").pid not in (0, pid)
        with pytest.raises(SupervisorError, match="no program named 'nobody'"):
            client.start("nobody")
        with pytest.raises(SupervisorError, match="already started"):
            client.start("sleeper")
        assert suite.status("--wait", "20").returncode == 0


def test_a_fatal_program_is_named_with_its_log_and_wait_ends_at_once(cli: Cli) -> None:
    with running(SLEEPER, CRASHER, cli=cli) as suite:
        # FATAL is final: the wait ends at once. Were the hour waited out, the test's
        # timeout (90 s) would end it first, and fail it
        result = suite.status("--wait", "3600", "--tail", "5")
        assert result.returncode == 1, result.stdout
        assert table(result.stdout)["crasher"][0] == "FATAL"
        assert "not ready: crasher (FATAL)" in result.stdout
        assert f"--- crasher: the last 1 lines of {suite.root}/crasher.log ---" in result.stdout
        assert "crasher: no luck today" in result.stdout

        body = json.loads(suite.status("--json").stdout)
        assert body["ready"] is False and body["not_ready"] == ["crasher"]


def test_a_health_port_in_use_names_the_program_that_cannot_bind(cli: Cli) -> None:
    # a long startsecs: however loaded the machine, the poller finds its port in
    # use within it, so supervisord says FATAL and the wait ends there
    suite = Suite(POLLERS.replace("startsecs=3", "startsecs=15"), cli=cli)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", suite.poller_port + 1))
        busy.listen()
        try:
            suite.start()
            result = suite.status("--wait", "40", "--tail", "3")
        finally:
            suite.stop()
    assert result.returncode == 1, result.stdout
    rows = table(result.stdout)
    assert rows["outboxd:poller-1"][0] == "FATAL", result.stdout
    assert "outboxd:poller-1 (FATAL)" in result.stdout.splitlines()[3]  # the verdict
    port = suite.poller_port + 1
    assert (
        f"outboxd: cannot serve /healthz on 127.0.0.1:{port}: address already in use "
        "(roles.poller.base_port + process number 1)"
    ) in result.stdout


def test_a_running_program_whose_healthz_lists_problems_is_not_ready(cli: Cli) -> None:
    with running(STAND_IN, cli=cli) as suite:
        result = suite.status("--wait", "3")
        assert result.returncode == 1, result.stdout
        row = table(result.stdout)["scheduler-0"]
        assert row[0] == "RUNNING"
        assert row[-1] == "not ready: database: OperationalError: disk I/O error", result.stdout
        body = json.loads(suite.status("--json").stdout)
        (program,) = body["programs"]
        assert program["health"]["status"] == 503
        assert program["problems"] == ["database: OperationalError: disk I/O error"]


def test_a_healthz_that_does_not_answer_is_named(cli: Cli) -> None:
    # a program named like scheduler-0 that listens nowhere
    silent = STAND_IN.replace("%(here)s/stand_in.py {port}", '-c "import time; time.sleep(99)"')
    with running(silent, cli=cli) as suite:
        result = suite.status("--wait", "3")  # RUNNING by then; never healthy
        assert result.returncode == 1
        url = f"http://127.0.0.1:{suite.scheduler_port}/healthz"
        assert f"not ready: no answer from {url}" in result.stdout, result.stdout


# --- supervisord not there ----------------------------------------------------------------


def test_no_supervisord_is_69_with_one_line(cli: Cli, tmp_path: Path) -> None:
    suite = Suite(SLEEPER, cli=cli)  # written, never started
    try:
        result = suite.status()
        assert result.returncode == 69
        assert result.stdout == ""
        assert result.stderr == (
            f"outboxd: supervisord is not running: no socket at {suite.root}/supervisor.sock\n"
        )
        # a socket file nobody listens on (supervisord killed): refused
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(suite.root / "supervisor.sock"))
        try:
            result = suite.status("--supervisor", str(suite.root / "supervisor.sock"))
        finally:
            sock.close()
        assert result.returncode == 69
        assert result.stderr == (
            f"outboxd: supervisord is not running: unix://{suite.root}/supervisor.sock "
            "refuses connections\n"
        )
        # --wait gives up after its time, with the same line (a wait that never gave
        # up would run into the test's timeout)
        env = {"OUTBOXD_SUPERVISOR": f"unix://{tmp_path}/none.sock"}
        began = time.monotonic()
        waited = cli("status", "-c", str(suite.yaml), "--wait", "1", cwd=tmp_path, env=env)
        assert waited.returncode == 69
        assert time.monotonic() - began >= 1  # it did wait its second
        assert waited.stderr.count("\n") == 1
        assert f"no socket at {tmp_path}/none.sock" in waited.stderr
    finally:
        suite.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--supervisor", "ftp://x"], "--supervisor: 'ftp://x': use unix://PATH"),
        (["--wait", "-1"], "--wait: -1 is not 0 to 86400 seconds"),
        (["--wait", "nan"], "--wait: nan is not 0 to 86400 seconds"),
        (["--tail", "5000"], "--tail: 5000 is not 0 to 1000 lines"),
    ],
)
def test_bad_options_are_64(cli: Cli, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "o.yaml").write_text("database: sqlite:///o.db\n")
    result = cli("status", "-c", "o.yaml", *args, cwd=tmp_path)
    assert result.returncode == 64
    assert result.stderr.startswith(f"outboxd: {message}")
    assert result.stderr.count("\n") == 1


# --- make run (ops/run.sh) ------------------------------------------------------------


LAST_LINE = "a 10-minute tour of the demo"  # what ops/run.sh prints before it waits


def _as_from_a_terminal() -> None:
    """SIGINT as a shell in a terminal has it. A test session started in the
    background of a shell (nohup, some CI runners) ignores SIGINT, its children
    inherit that, and a shell cannot trap a signal ignored when it started: the
    script would not hear the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RunScript:
    """``sh ops/run.sh BIN outboxd.yaml WAIT`` in a suite's directory, its output in a file."""

    def __init__(self, suite: Suite, name: str = "run") -> None:
        self.out = suite.root / f"{name}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                ["sh", str(ROOT / "ops" / "run.sh"), str(BIN), "outboxd.yaml", "40"],
                cwd=suite.root, env=suite.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=_as_from_a_terminal,
            )  # fmt: skip

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what in (text := self.text()):
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {what!r} in the output of ops/run.sh:\n{self.text()}")

    def ended(self, timeout: float = 60) -> int | str:
        """The script's exit status, or what it and supervisord said when it did not
        end in ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log = self.out.parent / "supervisord.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            return f"still running after {timeout:g}s; supervisord.log ends:\n{tail}"

    def supervisord_pid(self) -> int:
        line = self.wait_for("supervisord started (pid ")
        return int(line.split("supervisord started (pid ", 1)[1].split(")", 1)[0])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_run_script_says_ready_and_term_stops_the_suite(cli: Cli) -> None:
    suite = Suite(POLLERS, SLEEPER, cli=cli)
    run = RunScript(suite)
    try:
        text = run.wait_for(LAST_LINE)
        assert "outboxd: ready\n" in text
        assert "ready: 3 programs running, 2 healthy" in text
        sup = run.supervisord_pid()
        pollers = [suite.supervisor().program(f"outboxd:poller-{n}").pid for n in (0, 1)]

        again = RunScript(suite, "again")  # a second `make run` in the same directory
        assert again.proc.wait(30) == 69
        assert "a supervisord already answers for supervisord.conf" in again.text()

        run.proc.send_signal(signal.SIGTERM)
        assert run.ended() == 130, run.text()
        assert "outboxd: stopping the suite" in run.text()
        for pid in [sup, *pollers]:
            assert not Path(f"/proc/{pid}").exists() or gone(pid), pid
    finally:
        run.kill()
        suite.stop()


def test_run_script_names_what_failed_with_its_log(cli: Cli) -> None:
    suite = Suite(SLEEPER, CRASHER, cli=cli)
    run = RunScript(suite)
    try:
        text = run.wait_for(LAST_LINE)
        assert "not ready: crasher (FATAL)" in text
        assert "crasher: no luck today" in text
        assert "outboxd: not ready: see above; the rest runs on" in text
        run.proc.send_signal(signal.SIGINT)
        assert run.ended() == 130, run.text()
    finally:
        run.kill()
        suite.stop()


# --- where supervisord is ---------------------------------------------------------------


def test_the_supervisor_address_from_option_environment_and_defaults(
    cli: Cli, tmp_path: Path
) -> None:
    conf = tmp_path / "supervisord.conf"
    assert supervisor_address(None, {}, tmp_path).url == f"unix://{tmp_path}/var/supervisor.sock"
    conf.write_text("[unix_http_server]\nfile=%(here)s/run/%(ENV_WHO)s.sock\n")
    found = supervisor_address(None, {"WHO": "ops"}, tmp_path)
    assert found.url == f"unix://{tmp_path}/run/ops.sock"
    conf.write_text(
        "[inet_http_server]\nport=127.0.0.1:9001\n"
        "[supervisorctl]\nserverurl=http://127.0.0.1:9001\nusername=ops\npassword=s3cret\n"
    )
    found = supervisor_address("supervisord.conf", {}, tmp_path)
    assert (found.url, found.username, found.password) == ("http://127.0.0.1:9001", "ops", "s3cret")
    conf.write_text("[inet_http_server]\nport=*:9002\n")
    assert supervisor_address(str(conf), {}, tmp_path).url == "http://127.0.0.1:9002"
    env = {"OUTBOXD_SUPERVISOR": "unix:///run/supervisor.sock"}
    assert supervisor_address(None, env, tmp_path).url == "unix:///run/supervisor.sock"
    assert supervisor_address("sock", env, tmp_path).url == f"unix://{tmp_path}/sock"
    conf.write_text("[supervisord]\nnodaemon=true\n")
    with pytest.raises(ValueError, match="no \\[unix_http_server\\] or \\[inet_http_server\\]"):
        supervisor_address(str(conf), {}, tmp_path)
    conf.write_text("[unix_http_server]\nfile=%(ENV_NOPE)s\n")
    with pytest.raises(ValueError, match=r"supervisord\.conf: "):
        supervisor_address(str(conf), {}, tmp_path)
