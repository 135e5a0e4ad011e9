"""The suite as a user runs it: the repo's own supervisord.conf and
config/outboxd.yaml, started with ``supervisord -c`` and driven with
``supervisorctl -c``.

Each test copies supervisord.conf, config/outboxd.yaml and config/demo into a
temporary directory (``%(here)s`` then points there: its own var/, socket, logs
and SQLite database), links ``.venv`` to the virtualenv running the tests, and
moves every port with the OUTBOXD_*_PORT variables, so the repo's var/ and the
demo's ports are never touched. A test that needs a variant (a slow simulator,
a short lease) edits its copy and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.sim.mllp import MllpSimulator, Rule
from daemon.store.db import open_database
from daemon.store.sync import Store
from tests.support.ports import free_port, free_port_pair
from tests.support.waiting import eventually

# a backstop: each wait below has its own deadline, READY_TIMEOUT the longest
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # not resolved: a venv's python is a symlink
PROGRAMS = {
    "demo:demo-traffic",
    "demo:sim-bpjs",
    "demo:sim-fhir",
    "demo:sim-http",
    "demo:sim-khanza",
    "demo:sim-mail",
    "demo:sim-mllp",
    "outboxd:dispatcher-0",
    "outboxd:dispatcher-1",
    "outboxd:poller-0",
    "outboxd:scheduler-0",
    "outboxd:scheduler-1",
    "outboxd:control-0",
}
TRAFFIC = ("hie", "webhook")  # the channels of demo-traffic and of the tests' messages
# what the demo's status check makes of a webhook message the partner took
VERDICTS = {"confirmed", "rejected"}
STOPWAITSECS = 45  # supervisord.conf, [program:dispatcher]
# seconds for the suite to come up: 11 programs start at once, and on a loaded
# machine their imports alone take tens of seconds (a program that fails ends the
# wait at once)
READY_TIMEOUT = 120.0
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes on Linux


# --- environment checks -------------------------------------------------------------


def _venv_problem() -> str | None:
    """Why the venv running the tests cannot serve as the suite's ``.venv``."""
    for tool in ("outboxd", "supervisord", "supervisorctl", "python"):
        if not (VENV / "bin" / tool).exists():
            return f"{VENV}/bin/{tool} does not exist (the tests' venv must have outboxd installed)"
    try:
        found = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", "import daemon; print(daemon.__file__)"],
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return f"{VENV}/bin/python cannot import daemon outside the repo: {exc}"
    if not Path(found).resolve().is_relative_to(REPO):
        return f"{VENV} imports daemon from {found}, not from this checkout ({REPO})"
    return None


@pytest.fixture(scope="module")
def venv() -> Path:
    problem = _venv_problem()
    if problem:
        pytest.skip(problem)
    return VENV


# --- helpers ------------------------------------------------------------------------


def hl7(control_id: str, mrn: str) -> bytes:
    """An ADT^A04 like config/demo/adt-a04.hl7, with its own MSH-10 and PID-3."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|OUTBOXD-E2E|CLINIC|HIE|HIE|{stamp}||ADT^A04^ADT_A01|{control_id}|P|2.5.1",
        f"EVN|A04|{stamp}",
        f"PID|1||{mrn}^^^CLINIC^MR||Santoso^Budi||19800101|M",
        "PV1|1|O|POLI-UMUM^^^CLINIC",
    ]
    return ("\r".join(segments) + "\r").encode()


def pid3(payload: bytes) -> str:
    """PID-3's ID: names a message whatever its MSH-10 says."""
    match = re.search(rb"\rPID\|[^|]*\|[^|]*\|([^|^]*)", payload)
    assert match, payload
    return match.group(1).decode()


try:  # loaded here, not in the forked child
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """SIGTERM supervisord if the test process dies, so no suite is left behind."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# --- the suite ----------------------------------------------------------------------


@dataclass
class Suite:
    """A copy of the repo's suite in ``root``, run by one supervisord."""

    root: Path
    venv: Path
    mllp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    bpjs_port: int = field(default_factory=free_port)
    fhir_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    dispatcher_port: int = field(default_factory=free_port_pair)
    control_port: int = field(default_factory=free_port)
    poller_port: int = field(default_factory=free_port)
    scheduler_port: int = field(default_factory=free_port_pair)
    control_health_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    child_pids: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        (self.root / "config").mkdir(parents=True)
        shutil.copy(REPO / "supervisord.conf", self.conf)
        shutil.copy(REPO / "config" / "outboxd.yaml", self.yaml)
        shutil.copytree(REPO / "config" / "demo", self.root / "config" / "demo")
        (self.root / ".venv").symlink_to(self.venv)
        # supervisord will not create its log directory (`make run` does: mkdir -p var/log)
        (self.root / "var" / "log").mkdir(parents=True)

    # paths
    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def yaml(self) -> Path:
        return self.root / "config" / "outboxd.yaml"

    @property
    def db(self) -> Path:
        return self.root / "var" / "outboxd.db"  # database: sqlite:///var/outboxd.db

    @property
    def logdir(self) -> Path:
        return self.root / "var" / "log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXD_")}
        return env | {
            "OUTBOXD_SIM_MLLP_PORT": str(self.mllp_port),
            "OUTBOXD_SIM_HTTP_PORT": str(self.http_port),
            "OUTBOXD_SIM_BPJS_PORT": str(self.bpjs_port),
            "OUTBOXD_SIM_FHIR_PORT": str(self.fhir_port),
            "OUTBOXD_SIM_SMTP_PORT": str(self.smtp_port),
            "OUTBOXD_DISPATCHER_PORT": str(self.dispatcher_port),
            "OUTBOXD_CONTROL_PORT": str(self.control_port),
            "OUTBOXD_POLLER_PORT": str(self.poller_port),
            "OUTBOXD_SCHEDULER_PORT": str(self.scheduler_port),
            "OUTBOXD_CONTROL_HEALTH_PORT": str(self.control_health_port),
        }

    def log(self, name: str = "supervisord", tail: int = 3000) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else f"({path}: none)"

    def logs(self) -> str:
        names = ["supervisord", "dispatcher-0", "dispatcher-1", "sim-mllp"]
        out = self.root / "supervisord.out"
        head = out.read_text(errors="replace")[-2000:] if out.exists() else ""
        return head + "".join(f"\n--- {n}.log ---\n{self.log(n, 1500)}" for n in names)

    # variants
    def edit_program(self, program: str, append: str) -> None:
        """Append arguments to ``[program:NAME]``'s command in the copied conf."""
        text = self.conf.read_text()
        pattern = re.compile(rf"(\[program:{re.escape(program)}\][^\[]*?\ncommand=[^\n]*)")
        text, n = pattern.subn(lambda m: m.group(1) + " " + append, text)
        assert n == 1, f"no command line for [program:{program}] in supervisord.conf"
        self.conf.write_text(text)

    def edit_yaml(self, old: str, new: str) -> None:
        text = self.yaml.read_text()
        assert text.count(old) == 1, f"{old!r} is not in config/outboxd.yaml exactly once"
        self.yaml.write_text(text.replace(old, new))

    # running
    async def run(self, *argv: str, timeout: float = 30.0) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.root,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"{' '.join(argv)} did not finish in {timeout}s") from None
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace")

    async def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """``supervisorctl -c <copy> ARGS``; its output (exit codes vary by command)."""
        _, out = await self.run(
            str(self.root / ".venv" / "bin" / "supervisorctl"), "-c", str(self.conf), *args,
            timeout=timeout,
        )  # fmt: skip
        return out

    async def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Migrate, start supervisord and wait until every program is ready, as `make
        run` does (``outboxd status --wait``: RUNNING, and each outboxd process's
        /healthz 200). It stops waiting at once when a program is FATAL."""
        outboxd = str(self.root / ".venv" / "bin" / "outboxd")
        code, out = await self.run(outboxd, "migrate", "-c", str(self.yaml))
        assert code == 0, out
        with (self.root / "supervisord.out").open("wb") as output:
            self.proc = await asyncio.create_subprocess_exec(
                str(self.root / ".venv" / "bin" / "supervisord"),
                "-c",
                str(self.conf),
                cwd=self.root,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        code, out = await self.run(
            outboxd, "status", "-c", str(self.yaml), "--supervisor", str(self.conf),
            "--wait", f"{timeout:g}", "--tail", "20", timeout=timeout + 30,
        )  # fmt: skip
        assert code == 0, f"the suite is not ready after {timeout:g}s:\n{out}\n{self.logs()}"
        await self.wait_running(PROGRAMS)  # their pids, for the teardown

    async def status(self) -> dict[str, tuple[str, str]]:
        """``supervisorctl status`` as {name: (STATE, the rest of the line)}."""
        out = await self.ctl("status")
        table = {}
        for line in out.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1].isupper():
                table[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        return table

    async def wait_running(self, names: set[str], timeout: float = 30.0) -> None:
        async def running() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"supervisord exited {self.proc.returncode}\n{self.logs()}")
            table = await self.status()
            self.child_pids |= {
                int(m.group(1))
                for _, rest in table.values()
                if (m := re.search(r"pid (\d+)", rest))
            }
            return all(table.get(n, ("",))[0] == "RUNNING" for n in names)

        await eventually(running, f"{sorted(names)} RUNNING", timeout, self.logs, interval=0.5)

    async def pid(self, name: str) -> int:
        out = (await self.ctl("pid", name)).strip()
        assert out.isdigit() and int(out) > 0, f"supervisorctl pid {name}: {out!r}"
        self.child_pids.add(int(out))
        return int(out)

    async def shutdown(self) -> None:
        """``supervisorctl shutdown``, then wait; kill what is left, by pid."""
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
                self.proc.kill()
                await self.proc.wait()
            for pid in self.child_pids:  # only if still one of this suite's programs
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if str(self.root).encode() in cmdline:
                        os.kill(pid, signal.SIGKILL)

    # the database
    def query(self, sql: str, *params: object) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.db, timeout=10)) as conn:
            return conn.execute(sql, params).fetchall()

    async def aquery(self, sql: str, *params: object) -> list[tuple]:
        return await asyncio.to_thread(self.query, sql, *params)

    async def counts(self, *channels: str, verdicts: bool = False) -> dict[str, int]:
        """{status: count} of the messages of ``channels`` (all, if none given); a
        message the status check moved on from ``sent`` (confirmed, rejected) counts
        as ``sent`` unless ``verdicts``."""
        where = f"WHERE channel IN ({', '.join('?' * len(channels))})" if channels else ""
        rows = await self.aquery(
            f"SELECT status, count(*) FROM outboxd_message {where} GROUP BY status", *channels
        )
        counts: dict[str, int] = {}
        for status, count in rows:
            status = "sent" if status in VERDICTS and not verdicts else status
            counts[status] = counts.get(status, 0) + count
        return counts

    async def held_by(self, pid: int) -> dict[int, str]:
        """{id: key} of the messages a process holds (status sending, its lease)."""
        rows = await self.aquery(
            "SELECT id, key FROM outboxd_message WHERE status = 'sending' AND lease_owner LIKE ?",
            f"%:{pid}:dispatcher.%",
        )
        return dict(rows)

    def enqueue(self, messages: list[NewMessage]) -> None:
        store = Store(open_database(DatabaseSettings(url=f"sqlite:///{self.db}")))
        try:
            results = store.enqueue_many(messages, actor="e2e-test")
        finally:
            store.close()
        assert all(r.created for r in results)

    async def wait_all_sent(self, timeout: float) -> dict[str, int]:
        """Every message of the MLLP and HTTP channels sent (the demo hospital's BPJS
        messages keep coming meanwhile: they are not these tests' subject)."""
        counts: dict[str, int] = {}

        async def all_sent() -> bool:
            nonlocal counts
            counts = await self.counts(*TRAFFIC)
            return set(counts) <= {"sent"}

        await eventually(
            all_sent, "every message sent", timeout, lambda: f"{counts}\n{self.logs()}"
        )
        return counts


def _root(tmp_path: Path) -> Path:
    """tmp_path, unless the socket path inside it would be too long for AF_UNIX."""
    if len(str(tmp_path / "suite" / "var" / "supervisor.sock")) <= MAX_SOCKET_PATH:
        return tmp_path / "suite"
    return Path(tempfile.mkdtemp(prefix="outboxd-e2e-")) / "suite"


@pytest.fixture
async def suite(venv: Path, tmp_path: Path) -> AsyncIterator[Suite]:
    root = _root(tmp_path)
    s = Suite(root, venv)
    try:
        yield s
    finally:
        await s.shutdown()
        if not root.is_relative_to(tmp_path):
            shutil.rmtree(root.parent, ignore_errors=True)


async def healthz(port: int) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5)
        ) as response,
    ):
        return response.status, await response.json()


# --- the tests ----------------------------------------------------------------------


@pytest.mark.timeout(900)  # three acts, each with its own deadlines
async def test_the_suite_runs_drains_when_stopped_and_survives_a_sigkill(suite: Suite):
    """One suite, started as `make run` starts it, through three acts in turn (each
    start of the demo suite is ten processes' imports): it runs and the demo's
    traffic flows; a stop while busy drains and loses nothing; a SIGKILL under load
    loses nothing and the message in flight is repeated with its control id."""
    # Variants, each for the act that says so:
    # - the demo hospital books a patient on every tick, one tick a second (act 1);
    suite.edit_program("sim-khanza", "--every 1s --arrivals 1")
    # - the MLLP simulator answers after 0.3 s, so the dispatchers are busy (4 sends
    #   in flight at most, ~13/s) with a backlog when they are stopped (act 2);
    suite.edit_program("sim-mllp", "--delay 0.3")
    # - the hie channel's lease is the default 60 s in the real config: a killed
    #   dispatcher's messages would wait that long to be taken again. 3 s keeps the
    #   act short, and the lease logic is the same (act 3).
    suite.edit_yaml("    concurrency: 2\n", "    concurrency: 2\n    lease: 3s\n")
    await suite.start()
    await runs_and_demo_traffic_flows(suite)
    await stop_while_busy_drains_exits_zero_and_loses_nothing(suite)
    await sigkill_under_load_loses_nothing_and_repeats_the_same_control_id(suite)


async def runs_and_demo_traffic_flows(suite: Suite) -> None:
    table = await suite.status()
    assert set(table) == PROGRAMS, table
    assert {name: state for name, (state, _) in table.items()} == dict.fromkeys(PROGRAMS, "RUNNING")

    async def both_channels_sent() -> bool:
        hie, webhook = await suite.counts("hie"), await suite.counts("webhook")
        return hie.get("sent", 0) >= 2 and webhook.get("sent", 0) >= 2

    await eventually(both_channels_sent, "demo traffic sent on hie and webhook", 30, suite.logs)
    counts = await suite.counts()
    assert set(counts) <= {"pending", "sending", "sent"}, counts

    for num in (0, 1):
        status, body = await healthz(suite.dispatcher_port + num)
        assert status == 200, body
        assert body.pop("node"), body  # the host's name: the file gives no node
        assert body == {"status": "ok", "role": "dispatcher", "process": num, "problems": []}
    status, body = await healthz(suite.poller_port)
    assert status == 200, body
    assert body["role"] == "poller" and body["status"] == "ok"
    for num in (0, 1):
        status, body = await healthz(suite.scheduler_port + num)
        assert status == 200, body
        assert body["role"] == "scheduler" and body["process"] == num, body
    status, body = await healthz(suite.control_health_port)
    assert status == 200 and body["role"] == "control", body
    # the control API sees what the suite does, as the CLI does
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{suite.control_port}/api/v1/stats") as response,
    ):
        assert response.status == 200
        stats = {c["channel"]: c for c in (await response.json())["channels"]}
    assert stats["hie"]["counts"]["sent"] >= 2, stats

    # the demo hospital: its visits reach the BPJS simulator, tasks in order, and
    # each visit's progress in the store says what BPJS holds
    async def bpjs_bookings() -> list[dict] | None:
        """What the BPJS simulator holds, or None while it does not listen (RUNNING
        says it has been up for 2 s, not that it listens: on a loaded machine its
        imports take longer)."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{suite.bpjs_port}/_sim/bookings") as response,
            ):
                return await response.json()
        except aiohttp.ClientConnectionError:
            return None

    held: list[dict] = []

    async def tasks_reached_bpjs() -> bool:
        nonlocal held
        held = await bpjs_bookings() or []
        return sum(len(b["tasks"]) for b in held) >= 3

    await eventually(
        tasks_reached_bpjs, "the demo hospital's tasks at BPJS", 60,
        lambda: f"{held}\n{suite.log('poller-0')}\n{suite.log('sim-khanza')}",
    )  # fmt: skip
    progress = dict(await suite.aquery("SELECT kodebooking, task_progress FROM outboxd_visit"))
    for booking in held:
        order = [t["taskid"] for t in booking["tasks"] if t["taskid"] != 99]
        expected = [1, 2, 3, 4, 5, 6, 7] if booking["pasienbaru"] else [3, 4, 5, 6, 7]
        assert order == expected[: len(order)], booking
        times = [t["waktu"] for t in booking["tasks"]]
        assert times == sorted(times) and len(set(times)) == len(times), booking
        visit = json.loads(progress[booking["kodebooking"]])
        for task in booking["tasks"]:
            entry = visit[str(task["taskid"])]
            assert entry["waktu"] == task["waktu"], (booking, visit)
            assert entry["status"] in {"queued", "sent"}, (booking, visit)  # sent, or soon

    # the BPJS simulator restarts: it keeps what it held (its state file), the
    # visits under way carry on, and nothing ends failed
    before = {b["kodebooking"]: b["tasks"] for b in await bpjs_bookings() or []}
    assert before, "the BPJS simulator stopped answering"
    await suite.ctl("restart", "demo:sim-bpjs")
    await suite.wait_running({"demo:sim-bpjs"})

    async def more_tasks_after_the_restart() -> bool:
        nonlocal held
        held = await bpjs_bookings() or []
        return sum(len(b["tasks"]) for b in held) >= sum(map(len, before.values())) + 3

    await eventually(
        more_tasks_after_the_restart, "tasks at BPJS after its restart", 60,
        lambda: f"{held}\n{suite.log('sim-bpjs')}\n{suite.log('dispatcher-0')}",
    )  # fmt: skip
    after = {b["kodebooking"]: b["tasks"] for b in held}
    for kodebooking, tasks in before.items():
        assert after[kodebooking][: len(tasks)] == tasks, kodebooking
    failed = await suite.aquery(
        "SELECT key, last_error FROM outboxd_message WHERE channel = 'bpjs'"
        " AND status NOT IN ('pending', 'sending', 'sent')"
    )
    assert failed == [], failed

    # SATUSEHAT: demo visits reach the FHIR simulator as chained resources, each
    # Condition naming the Encounter the server created for the same visit
    async def chained_visits() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{suite.fhir_port}/_sim/resources") as response,
        ):
            held = await response.json()
        encounters = {e["id"] for e in held.get("Encounter", [])}
        conditions = held.get("Condition", [])
        return len(conditions) >= 2 and all(
            c["encounter"]["reference"].removeprefix("Encounter/") in encounters for c in conditions
        )

    await eventually(
        chained_visits, "demo visits as Encounter and Condition at the FHIR simulator", 60,
        lambda: f"{suite.log('sim-fhir')}\n{suite.log('dispatcher-0')}",
    )  # fmt: skip

    # the demo's status check: the webhook partner's answers move on (RECEIVED,
    # PROCESSING, ACCEPTED or REJECTED) and so do the messages, each fire of the
    # schedule run by one of the two schedulers
    async def a_verdict() -> bool:
        return bool(set(await suite.counts("webhook", verdicts=True)) & VERDICTS)

    await eventually(
        a_verdict, "a webhook message confirmed or rejected by the status check", 90,
        lambda: f"{suite.log('scheduler-0')}\n{suite.log('scheduler-1')}",
    )  # fmt: skip
    runs = await suite.aquery(
        "SELECT r.fire_time, r.attempt, r.status FROM outboxd_job_run r"
        " JOIN outboxd_schedule s ON s.id = r.schedule_id WHERE s.name = 'webhook-status'"
    )
    fires = Counter((fire, attempt) for fire, attempt, _ in runs)
    assert runs and max(fires.values()) == 1, runs
    assert {status for _, _, status in runs} <= {"queued", "running", "succeeded"}, runs
    # a sent message moves on only to a verdict; the partner's intermediate
    # statuses stay in the timeline as sent -> sent, each naming what it said
    events = await suite.aquery(
        "SELECT e.to_status, e.details FROM outboxd_status_event e JOIN outboxd_message m"
        " ON m.id = e.message_id WHERE m.channel = 'webhook' AND e.from_status = 'sent'"
    )
    moves = {to for to, _ in events if to != "sent"}
    assert moves and moves <= VERDICTS, events
    notes = [details for to, details in events if to == "sent"]
    assert all("partner_status" in str(details) for details in notes), notes


async def stop_while_busy_drains_exits_zero_and_loses_nothing(suite: Suite) -> None:
    await suite.ctl("stop", "demo:demo-traffic")
    suite.enqueue(
        [NewMessage("hie", f"e2e-{i}", hl7(f"E2E{i:06d}", f"E2E-{i}"), "hl7") for i in range(200)]
    )
    total = sum((await suite.counts(*TRAFFIC)).values())

    for num in (0, 1):
        name = f"dispatcher-{num}"
        pid = await suite.pid(f"outboxd:{name}")

        async def busy(pid: int = pid) -> bool:
            # sending, with more claimed than in flight (concurrency 2): a local backlog
            counts = await suite.counts("hie")
            return counts.get("sent", 0) > 0 and len(await suite.held_by(pid)) > 2

        await eventually(busy, f"{name} busy with a backlog", 20, suite.logs)
        out = await suite.ctl("stop", f"outboxd:{name}", timeout=STOPWAITSECS + 15)
        assert f"outboxd:{name}: stopped" in out, out
        assert (await suite.status())[f"outboxd:{name}"][0] == "STOPPED"
        # supervisord says how it ended: "exit status 0", not "terminated by SIGKILL"
        # (what a stop not done within its STOPWAITSECS ends in)
        log = suite.log()
        assert f"stopped: {name} (exit status 0)" in log, log
        # the dispatcher drained with the configured deadline and exited 0 on its own
        assert "draining deadline_seconds=30.0" in suite.log(name), suite.log(name)
        assert "stopped exit_code=0" in suite.log(name), suite.log(name)
        assert await suite.held_by(pid) == {}, "a stopped dispatcher still holds messages"

    counts = await suite.counts(*TRAFFIC)
    assert set(counts) <= {"sent", "pending"}, counts
    assert sum(counts.values()) == total
    assert counts.get("pending", 0) > 0, f"nothing left to release: {counts}"
    assert (
        await suite.aquery("SELECT id, status FROM outboxd_message WHERE lease_owner IS NOT NULL")
        == []
    )
    # released, not retried: no attempt was counted against a pending message of the
    # test's (a demo message may have met a simulator not yet listening at the start)
    assert (
        await suite.aquery(
            "SELECT id, attempts FROM outboxd_message WHERE status = 'pending' AND attempts > 0"
            " AND channel = 'hie' AND key LIKE 'e2e-%'"
        )
        == []
    )

    await suite.ctl("start", "outboxd:*")
    await suite.wait_running({"outboxd:dispatcher-0", "outboxd:dispatcher-1"})
    assert await suite.wait_all_sent(60) == {"sent": total}


async def sigkill_under_load_loses_nothing_and_repeats_the_same_control_id(suite: Suite) -> None:
    await suite.wait_all_sent(30)  # the demo's own messages, before the peer changes
    # The peer is the test's own simulator on the port the config names, so what it
    # received (MSH-10 included) can be inspected: the sim-mllp process does not report it.
    await suite.ctl("stop", "demo:sim-mllp")
    delay = 0.25
    sim = MllpSimulator([Rule(delay=delay)])
    await sim.start("127.0.0.1", suite.mllp_port)
    try:
        count = 150
        control = {f"KILL-{i}": f"KILL{i:06d}" for i in range(count)}  # PID-3 → MSH-10
        suite.enqueue(
            [NewMessage("hie", f"kill-{i}", hl7(control[f"KILL-{i}"], f"KILL-{i}"), "hl7")
             for i in range(count)]
        )  # fmt: skip
        total = sum((await suite.counts(*TRAFFIC)).values())
        pid = await suite.pid("outboxd:dispatcher-0")
        await sim.wait_for(20, timeout=30)

        # Kill while the peer holds a message from dispatcher-0 it has not answered
        # yet: that message reached the peer and cannot have been recorded as sent.
        victim: int | None = None
        deadline = time.monotonic() + 20
        while victim is None:
            assert time.monotonic() < deadline, f"no send of dispatcher-0 caught\n{suite.logs()}"
            await asyncio.sleep(0.01)
            fresh = {r.control_id: r.at for r in list(sim.received)[-8:]}
            if not any(time.monotonic() - at < delay / 3 for at in fresh.values()):
                continue
            held = await suite.held_by(pid)
            for message_id, key in held.items():
                if not key.startswith("kill-"):
                    continue  # the demo's other channels (BPJS) are held too
                at = fresh.get(f"KILL{int(key.removeprefix('kill-')):06d}")
                if at is not None and time.monotonic() - at < delay * 0.6:
                    os.kill(pid, signal.SIGKILL)
                    victim = message_id
                    break
        # the dead process's leases, and where the event log stood when they were read
        ((mark,),) = await suite.aquery("SELECT COALESCE(MAX(id), 0) FROM outboxd_status_event")
        # (the test's own: the demo's other channels keep their 60 s lease, past this act)
        orphaned = {i for i, key in (await suite.held_by(pid)).items() if key.startswith("kill-")}
        assert victim in orphaned

        # supervisord restarts it: an unexpected exit under autorestart=true
        async def restarted() -> bool:
            state, rest = (await suite.status()).get("outboxd:dispatcher-0", ("", ""))
            return state == "RUNNING" and f"pid {pid}," not in rest

        await eventually(restarted, "dispatcher-0 restarted", 30, suite.logs, interval=0.5)
        assert "exited: dispatcher-0 (terminated by SIGKILL; not expected)" in suite.log()
        await suite.pid("outboxd:dispatcher-0")  # remember the new pid for the teardown

        assert await suite.wait_all_sent(60) == {"sent": total}
    finally:
        await sim.stop()

    # nothing lost: the peer saw every message, each time with the MSH-10 it was stored with
    seen: dict[str, list[bytes]] = defaultdict(list)
    for received in sim.received:
        seen[pid3(received.payload)].append(received.payload)
    rows = await suite.aquery(
        "SELECT id, payload FROM outboxd_message WHERE channel = 'hie' AND key LIKE 'kill-%'"
    )
    stored = {pid3(bytes(p)): (i, bytes(p)) for i, p in rows}
    assert set(seen) == set(stored) == set(control)
    for mrn, copies in seen.items():
        assert set(copies) == {stored[mrn][1]}, mrn
    ids = {r.control_id for r in sim.received}
    assert ids == set(control.values())
    repeated = {mrn: len(c) for mrn, c in seen.items() if len(c) > 1}
    by_id = {i: mrn for mrn, (i, _) in stored.items()}
    assert by_id[victim] in repeated, (
        f"the message in flight at the kill was not sent again: {repeated}"
    )
    # The dead process's leases were not taken over while it held them: each message
    # it held left its hands by lease expiry, or by an outcome it had sent to the
    # store worker before the kill and the worker wrote after (the worker reads what
    # is in its socket). The one in flight at the kill had no outcome yet.
    left: dict[int, str] = {}
    for i, actor in await suite.aquery(
        "SELECT message_id, actor FROM outboxd_status_event"
        " WHERE from_status = 'sending' AND id > ? ORDER BY id",
        mark,
    ):
        left.setdefault(i, actor)  # the first move out of 'sending' after the kill
    owner = f":{pid}:dispatcher."
    taken = {i: left.get(i) for i in orphaned if left.get(i) != "lease-expiry"}
    assert all(a is not None and owner in a for a in taken.values()), taken
    assert left[victim] == "lease-expiry", left[victim]
