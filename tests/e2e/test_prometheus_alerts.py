"""The shipped alert rules, fired by a real Prometheus scraping a running outboxd.

A supervisord of the test's own runs a dispatcher, a poller and the control role
(in the directory of its supervisord.conf, where the control role finds it as in
the demo suite). The dispatcher's partners are down: channel ``hie`` retries with
a long backoff, so its messages, enqueued an hour ago, wait, and its breaker
opens; channel ``lab`` gives up at the first failure, so its deliveries fail.
Then the poller is stopped with supervisord. Prometheus (the ``prometheus``
binary, on 127.0.0.1, a data directory in the temporary one) scrapes every
process once a second with a config derived from ops/prometheus/prometheus.yml,
and evaluates ops/prometheus/rules.yml with every ``for:`` cut to a second (the
expressions, thresholds, labels and annotations as shipped); the alerts are read
from its HTTP API (/api/v1/alerts) until they fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import NewMessage
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.sync import Store
from daemon.suite.supervisor import Supervisor, supervisor_address
from tests.services import alertmanager, prometheus
from tests.support.mailbox import Mailbox
from tests.support.ports import free_port
from tests.support.processes import ROOT
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

OPS = ROOT / "ops" / "prometheus"
SUPERVISORD = Path(sys.executable).parent / "supervisord"
JOBS = {"outboxd-dispatcher", "outboxd-poller", "outboxd-scheduler", "outboxd-control"}
ROLES = ("dispatcher", "poller", "control")  # no scheduler: its job is left out here
WAIT = 120.0  # seconds for a condition: processes starting on a loaded machine

CONFIG = """
database: sqlite:///{db}
channels:
  hie:
    kind: http
    url: "http://127.0.0.1:{partner}/hie"
    retry: {{backoff: 1h, max_backoff: 1h}}
    breaker: {{failures: 2, cooldown: 1h}}
  lab:
    kind: http
    url: "http://127.0.0.1:{partner}/lab"
    retry: {{max_attempts: 1}}
    breaker: {{failures: 1000}}
roles:
  dispatcher: {{base_port: {dispatcher}, store_process: false}}
  poller: {{base_port: {poller}}}
  control: {{base_port: {control}}}
control: {{port: {api}}}
"""

SUPERVISORD_CONF = """
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

[group:outboxd]
programs={programs}
"""

PROGRAM = """
[program:{role}]
command={python} -m daemon run {role} -c %(here)s/outboxd.yaml --process-num %(process_num)d
process_name=%(program_name)s-%(process_num)d
directory=%(here)s
startsecs=1
startretries=0
autorestart=false
stopwaitsecs=20
redirect_stderr=true
stdout_logfile=%(here)s/%(program_name)s-%(process_num)d.log
"""


@dataclass
class Setup:
    """The test's directory (short: supervisord's socket path is limited), ports."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="outboxd-pa-")))
    ports: dict[str, int] = field(default_factory=lambda: {r: free_port() for r in ROLES})
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)

    @property
    def db(self) -> Path:
        return self.root / "o.db"

    def logs(self) -> str:
        out = []
        for log in sorted(self.root.glob("*.log")):
            out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)


def prometheus_config(setup: Setup) -> dict[str, Any]:
    """ops/prometheus/prometheus.yml with the test's targets, a second's scrape and
    evaluation, and the rules' test copy."""
    config = yaml.safe_load((OPS / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert config["rule_files"] == ["rules.yml"]
    jobs = []
    for job in config["scrape_configs"]:
        role = job["job_name"].removeprefix("outboxd-")
        if role not in setup.ports:
            continue
        job.pop("scrape_timeout", None)  # may not exceed the interval
        job["static_configs"] = [{"targets": [f"127.0.0.1:{setup.ports[role]}"]}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    [managers] = config["alerting"]["alertmanagers"]
    managers["static_configs"] = [{"targets": [f"127.0.0.1:{setup.alertmanager_port}"]}]
    return config


def alertmanager_config(smtp_port: int) -> dict[str, Any]:
    """ops/prometheus/alertmanager.yml with the test's SMTP server (plain, no
    password: it offers no AUTH) and its waits a second."""
    config = yaml.safe_load((OPS / "alertmanager.yml").read_text())
    config["global"] |= {"smtp_smarthost": f"127.0.0.1:{smtp_port}", "smtp_require_tls": False}
    config["route"] |= {"group_wait": "1s", "group_interval": "1s"}
    return config


def quick_rules() -> dict[str, Any]:
    """ops/prometheus/rules.yml with every ``for:`` a second."""
    rules = yaml.safe_load((OPS / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    return rules


@contextlib.contextmanager
def supervised(setup: Setup) -> Iterator[Supervisor]:
    """supervisord running the roles, stopped (with them) at the end."""
    migrated = open_database(DatabaseSettings(url=f"sqlite:///{setup.db}"))
    migrate(migrated)
    migrated.close()
    (setup.root / "outboxd.yaml").write_text(
        CONFIG.format(db=setup.db, partner=free_port(), api=free_port(), **setup.ports)
    )
    conf = setup.root / "supervisord.conf"
    programs = "".join(PROGRAM.format(role=role, python=sys.executable) for role in ROLES)
    conf.write_text(SUPERVISORD_CONF.format(programs=",".join(ROLES)) + programs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXD_")}
    with (setup.root / "supervisord.out").open("wb") as out:
        proc = subprocess.Popen(
            [str(SUPERVISORD), "-c", str(conf)],
            cwd=setup.root,
            env=env | {"PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Supervisor(supervisor_address(str(conf)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def server(setup: Setup, name: str, command: list[str]) -> Iterator[None]:
    """A server of the test's, its output in NAME.log, stopped at the end."""
    with (setup.root / f"{name}.log").open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=setup.root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def prometheus_server(setup: Setup, binary: str) -> Iterator[str]:
    """Prometheus (``binary``) on the test's port, scraping the roles; its base URL."""
    home = setup.root / "prometheus"
    home.mkdir()
    (home / "rules.yml").write_text(yaml.safe_dump(quick_rules(), sort_keys=False))
    (home / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(setup)))
    address = f"127.0.0.1:{setup.prometheus_port}"
    command = [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address={address}",
    ]
    with server(setup, "prometheus", command):
        yield f"http://{address}"


@contextlib.contextmanager
def alertmanager_server(setup: Setup, binary: str, smtp_port: int) -> Iterator[None]:
    """Alertmanager (``binary``) on the test's port, mailing the test's SMTP server."""
    home = setup.root / "alertmanager"
    home.mkdir()
    (home / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(smtp_port)))
    command = [
        binary,
        f"--config.file={home / 'alertmanager.yml'}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{setup.alertmanager_port}",
        "--cluster.listen-address=",  # one Alertmanager: no gossip port
    ]
    with server(setup, "alertmanager", command):
        yield


@contextlib.contextmanager
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            if response.status != 200:
                return None
            return await response.json()
    except (aiohttp.ClientError, TimeoutError):
        return None  # not listening yet


async def test_prometheus_fires_the_shipped_alerts_from_outboxd():
    binaries = prometheus(), alertmanager()  # or a skip naming what to install
    setup = Setup()
    try:
        with (
            mailbox() as box,
            supervised(setup) as supervisor,
            alertmanager_server(setup, binaries[1], box.port),
            prometheus_server(setup, binaries[0]) as base,
        ):
            await _fire(setup, supervisor, base, box)
    finally:
        shutil.rmtree(setup.root, ignore_errors=True)


async def _fire(setup: Setup, supervisor: Supervisor, base: str, box: Mailbox) -> None:
    async with aiohttp.ClientSession() as session:

        async def query(expr: str) -> list[dict[str, Any]]:
            answer = await get_json(session, f"{base}/api/v1/query?query={expr}")
            return answer["data"]["result"] if answer else []

        async def every_role_up() -> bool:
            ups = await query("up")
            return len(ups) == len(ROLES) and all(s["value"][1] == "1" for s in ups)

        await eventually(every_role_up, "Prometheus to scrape every role", WAIT, setup.logs)
        # the lab's counters are scraped at 0 before its deliveries fail, so that
        # their rate is one Prometheus can see rise
        await eventually(
            lambda: query('outboxd_deliveries_total{channel="lab",result="failed"}'),
            "the lab channel's counters scraped",
            WAIT,
            setup.logs,
        )
        store = Store(open_database(DatabaseSettings(url=f"sqlite:///{setup.db}")))
        try:
            an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
            for n in range(3):
                store.enqueue(NewMessage("hie", f"hie-{n}", b'{"n": 1}'), now=an_hour_ago)
            for n in range(3):
                store.enqueue(NewMessage("lab", f"lab-{n}", b'{"n": 1}'))
        finally:
            store.close()
        await asyncio.to_thread(supervisor.stop, "outboxd:poller-0")

        # (alert, what it is about: its channel, program or job)
        expected = {
            ("OutboxdQueueAge", "hie"),
            ("OutboxdBreakerOpen", "hie"),
            ("OutboxdFailureRate", "lab"),
            ("OutboxdProcessNotRunning", "outboxd:poller-0"),
            ("OutboxdTargetDown", "outboxd-poller"),
        }

        async def firing() -> set[tuple[str, str]]:
            answer = await get_json(session, f"{base}/api/v1/alerts")
            return {
                (labels["alertname"], labels.get("channel") or labels.get("program")
                 or labels.get("job", ""))
                for alert in (answer["data"]["alerts"] if answer else [])
                if alert["state"] == "firing"
                for labels in [alert["labels"]]
            }  # fmt: skip

        async def all_firing() -> set[tuple[str, str]] | None:
            now = await firing()
            return now if expected <= now else None

        now = await eventually(all_firing, f"alerts firing: {sorted(expected)}", WAIT, setup.logs)
        # and nothing else: the other programs run, supervisord answers, the lab's
        # queue is not old (its messages failed), no source is polled
        assert now == expected

        # and by mail, through Alertmanager: a mail per alert name, to the address
        # of alertmanager.yml
        def mailed() -> set[str]:
            subjects = [str(m["Subject"]) for m in box.messages]
            return {name for name, _ in expected if any(name in s for s in subjects)}

        names = {name for name, _ in expected}
        await eventually(lambda: mailed() == names, f"mails of {sorted(names)}", WAIT, setup.logs)
        mail = box.messages[0]
        assert mail["To"] == "it-oncall@example.org" and "[FIRING:" in mail["Subject"]
        assert "outboxd-alerts@example.org" in mail["From"]
