"""Each role's /metrics, from a real process of each: its own metric families and
none of another role's (a poller exports no empty delivery families); and the
control role's view of supervisord's programs: with a real supervisord, and with
none to ask."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.config.database import DatabaseSettings
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from tests.integration.test_status import CRASHER, SLEEPER, running
from tests.support.ports import free_port, free_port_pair
from tests.support.processes import DaemonProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow  # a process of each role

# what each role's process exports, besides the frame's outboxd_up and
# outboxd_process_info: the families as
# Prometheus names them (a counter without _total)
FAMILIES = {
    "dispatcher": {
        "outboxd_deliveries",
        "outboxd_send_duration_seconds",
        "outboxd_in_flight_messages",
        "outboxd_claimed_messages",
        "outboxd_claim_duration_seconds",
        "outboxd_leases_lost",
        "outboxd_leases_expired",
        "outboxd_circuit_breaker_state",
        "outboxd_rate_limit_waits",
        "outboxd_rate_limit_wait_seconds",
        "outboxd_loop_errors",
        "outboxd_oauth_token_fetches",
        "outboxd_wakeups",
        "outboxd_wakeups_listening",
    },
    "poller": {
        "outboxd_poll_runs",
        "outboxd_poll_duration_seconds",
        "outboxd_source_errors",
        "outboxd_poll_messages",
        "outboxd_poll_held_steps",
        "outboxd_poll_last_success_timestamp_seconds",
    },
    "scheduler": {
        "outboxd_schedule_fires",
        "outboxd_schedule_lateness_seconds",
        "outboxd_job_runs",
        "outboxd_job_duration_seconds",
        "outboxd_schedule_last_success_timestamp_seconds",
        "outboxd_notifications",
        "outboxd_oauth_token_fetches",  # its status checks' tokens
    },
    "control": {
        "outboxd_queue_messages",
        "outboxd_queue_oldest_pending_age_seconds",
        "outboxd_process_running",
        "outboxd_supervisor_up",
        "outboxd_webhook_receipts",
    },
}

CONFIG = """
database: sqlite:///{db}
channels:
  hook: {{kind: http, url: "http://127.0.0.1:9/hook"}}
roles:
  dispatcher: {{base_port: {dispatcher}, store_process: false}}
  poller: {{base_port: {poller}}}
  scheduler: {{base_port: {scheduler}}}
  control: {{base_port: {control}}}
control: {{port: {api}}}
"""


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Each family of an exposition with its samples (labels, value)."""
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


async def test_each_role_exports_its_own_families_and_no_other_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "outbox.db"
    database = open_database(DatabaseSettings(url=f"sqlite:///{db}"))
    migrate(database)
    database.close()
    ports = {
        "dispatcher": free_port_pair(),
        "poller": free_port(),
        "scheduler": free_port_pair(),
        "control": free_port(),
    }
    config = tmp_path / "outboxd.yaml"
    config.write_text(CONFIG.format(db=db, api=free_port(), **ports))
    # no supervisord here: the control role says so rather than exporting states
    monkeypatch.setenv("OUTBOXD_SUPERVISOR", f"unix://{tmp_path}/no-supervisord.sock")
    processes = {role: DaemonProcess(tmp_path, config, role=role) for role in FAMILIES}
    try:
        await asyncio.gather(*(p.start(ports[role]) for role, p in processes.items()))
        scraped = {}
        for role, process in processes.items():
            status, text = await process.get("/metrics")
            assert status == 200, (role, text)
            scraped[role] = families(text)
    finally:
        codes = await asyncio.gather(*(p.stop() for p in processes.values()))
    assert codes == [0] * len(processes)

    everyone = set().union(*FAMILIES.values())
    for role, found in scraped.items():
        frame = {"outboxd_up", "outboxd_process_info"}
        assert set(found) == FAMILIES[role] | frame, (role, sorted(found))
        assert not (set(found) & (everyone - FAMILIES[role])), role
        assert found["outboxd_up"] == [({"role": role}, 1.0)]
    # the dispatcher's channel has its series from the start, before any delivery
    results = {s["result"] for s, _ in scraped["dispatcher"]["outboxd_deliveries"]}
    assert results == {"delivered", "retried", "rejected", "failed"}
    assert scraped["dispatcher"]["outboxd_circuit_breaker_state"] == [({"channel": "hook"}, 0.0)]
    # supervisord unreachable: 0, and no program's state as if it had been read
    assert scraped["control"]["outboxd_supervisor_up"] == [({}, 0.0)]
    assert scraped["control"]["outboxd_process_running"] == []
    assert "supervisord does not answer" in processes["control"].output()


async def test_the_control_role_exports_what_supervisord_says_of_each_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A real supervisord: a running program is 1, one that never started or was
    stopped 0; supervisord gone, the states go and outboxd_supervisor_up says 0."""
    with running(SLEEPER, CRASHER) as suite:
        health = free_port()
        config = suite.root / "control.yaml"
        config.write_text(
            f"database: sqlite:///{suite.root}/o.db\n"
            f"roles:\n  control: {{base_port: {health}}}\ncontrol: {{port: {free_port()}}}\n"
        )
        monkeypatch.setenv("OUTBOXD_SUPERVISOR", str(suite.conf))
        control = DaemonProcess(tmp_path, config, role="control")
        await control.start(health)
        try:

            async def states() -> dict[str, float]:
                _, text = await control.get("/metrics")
                found = families(text)
                up = found["outboxd_supervisor_up"][0][1]
                return {"up": up} | {s["program"]: v for s, v in found["outboxd_process_running"]}

            async def settled(want: dict[str, float]) -> bool:
                return await states() == want

            want = {"up": 1.0, "sleeper": 1.0, "crasher": 0.0}  # crasher: exited, FATAL
            await eventually(lambda: settled(want), f"states {want}", dump=control.output)
            await asyncio.to_thread(suite.supervisor().stop, "sleeper")
            want = {"up": 1.0, "sleeper": 0.0, "crasher": 0.0}
            assert await states() == want  # read at the scrape: no delay
            assert suite.proc is not None
            suite.proc.terminate()
            await asyncio.to_thread(suite.proc.wait, 30)
            assert await states() == {"up": 0.0}
        finally:
            assert await control.stop() == 0
    assert "supervisord does not answer" in control.output()
