"""A dispatcher process delivering to the FHIR simulator with OAuth2 tokens, as a
SIMRS's outboxd sends to SATUSEHAT: the token endpoint down and back, a refused
resource in the message's timeline, and no secret or token in any log line or
in ``check-config``'s output."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.domain.messages import NewMessage
from daemon.sim.fhir import NIK, PATIENTS, FhirSimulator
from daemon.store.models import Message, StatusEvent
from daemon.store.sync import Store
from tests.integration.test_dispatcher import statuses
from tests.integration.test_fhir_channel import condition, encounter
from tests.support.ports import free_port
from tests.support.processes import ROOT, DaemonProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

CLIENT_ID, CLIENT_SECRET = "satusehat-client-0d1e2f", "satusehat-secret-9a8b7c6d5e"

CONFIG = """
database: {db_url}
channels:
  satusehat:
    kind: fhir
    base_url: {base_url}
    auth:
      type: oauth2
      token_url: {token_url}
      client_id: ${{SATUSEHAT_CLIENT_ID}}
      client_secret: ${{SATUSEHAT_CLIENT_SECRET}}
      client_auth: body
    concurrency: 2
    lease: 10s
    retry: {{max_attempts: 2, backoff: 0.2s, max_backoff: 0.5s}}
    breaker: {{failures: 3, cooldown: 0.5s}}
roles:
  dispatcher: {{base_port: {health_port}}}
control: {{port: {control_port}}}
logging: {{level: DEBUG}}
"""


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATUSEHAT_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SATUSEHAT_CLIENT_SECRET", CLIENT_SECRET)


def write_config(path: Path, sim: FhirSimulator, db_url: str, health: int) -> Path:
    path.write_text(
        CONFIG.format(
            db_url=db_url,
            base_url=sim.base_url(),
            token_url=sim.token_url(),
            health_port=health,
            control_port=free_port(),
        )
    )
    return path


def enqueue(store: Store, *messages: tuple[str, str, object]) -> list[int]:
    batch = [
        NewMessage(
            "satusehat",
            key,
            body.encode() if isinstance(body, str) else json.dumps(body).encode(),
            kind,
        )
        for key, kind, body in messages
    ]
    return [r.id for r in store.enqueue_many(batch)]


def held_back(store: Store) -> bool:
    """Every message waits, none sent or failed, no attempt counted, and at least
    one was held back for want of a token."""
    rows = list(Message.select(Message.status, Message.attempts, Message.last_error))
    return all(r.status in ("pending", "sending") and r.attempts == 0 for r in rows) and any(
        (r.last_error or "").startswith("no access token") for r in rows
    )


async def test_token_endpoint_down_then_back_none_failed(tmp_path, db_url, store, credentials):
    async with FhirSimulator({CLIENT_ID: CLIENT_SECRET}) as sim:
        sim.tokens.faults.status = 503
        health = free_port()
        config = write_config(tmp_path / "o.yaml", sim, db_url, health)
        enqueue(
            store, *[(f"REG-{i}", "conditional-create", encounter(f"REG-{i}")) for i in range(6)]
        )
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)

            async def failed_fetches() -> float:
                return await proc.metric(
                    "outboxd_oauth_token_fetches_total", channel="satusehat", result="failed"
                )

            deadline = asyncio.get_running_loop().time() + 20
            while await failed_fetches() < 2:
                assert asyncio.get_running_loop().time() < deadline, proc.output()
                await asyncio.sleep(0.1)
            await eventually(lambda: held_back(store), what="messages held, none attempted")
            assert sim.calls == []  # nothing reached the FHIR server
            sim.tokens.faults.status = None  # the token endpoint is back
            await eventually(lambda: statuses(store) == {"sent": 6}, timeout=30, what="6 sent")
            assert len(sim.of("Encounter")) == 6
            assert sim.tokens.fetches == 1  # one token served every message
            ok = await proc.metric(
                "outboxd_oauth_token_fetches_total", channel="satusehat", result="ok"
            )
            assert ok == 1
            assert await proc.stop() == 0
        finally:
            proc.kill()
        failed = StatusEvent.select().where(StatusEvent.to_status == "failed").count()
        assert failed == 0
        waits = [
            e.details
            for e in StatusEvent.select().where(StatusEvent.to_status == "pending")
            if e.details and e.details.get("counted") is False
        ]
        assert waits and all(d["error"].startswith("no access token") for d in waits)


async def test_a_refused_resource_shows_its_outcome_and_no_secret_is_ever_written(
    tmp_path, db_url, store, credentials
):
    async with FhirSimulator({CLIENT_ID: CLIENT_SECRET}, lifetime=300) as sim:
        health = free_port()
        config = write_config(tmp_path / "o.yaml", sim, db_url, health)
        pid, nik = PATIENTS[1][0], PATIENTS[1][1]
        ids = enqueue(
            store,
            ("P-1", "search", f"Patient?identifier={NIK}|{nik}"),
            ("E-1", "conditional-create", encounter("E-1", f"Patient/{pid}")),
            ("C-1", "create", condition("Encounter/not-an-encounter")),
        )
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(
                lambda: statuses(store) == {"sent": 2, "failed": 1}, what="2 sent, 1 failed"
            )
            sim.expire_tokens()  # a 401 mid-run: a fresh token, logged as fetched
            enqueue(store, ("E-2", "create", encounter("E-2")))
            await eventually(lambda: statuses(store) == {"sent": 3, "failed": 1}, what="E-2 sent")
            assert await proc.stop() == 0
        finally:
            proc.kill()
        timeline = store.message_timeline(ids[2])
        assert timeline is not None and timeline.status == "failed"
        [refused] = [e for e in timeline.events if e.to_status == "failed"]
        assert refused.details is not None
        assert refused.details["error"] == (
            "HTTP 400 Bad Request: error value: Encounter/not-an-encounter does not exist "
            "(at Condition.encounter.reference)"
        )
        assert json.loads(timeline.response or "")["resourceType"] == "OperationOutcome"
        search = store.message_timeline(ids[0])
        assert search is not None and json.loads(search.response or "")["id"] == pid
        # no secret, no client id, no token in any line the process wrote
        log = proc.log.read_text()
        assert "access token fetched" in log and sim.tokens.fetches == 2
        secrets = [CLIENT_ID, CLIENT_SECRET, *sim.tokens.given]
        assert len(secrets) == 4
        leaked = [s for s in secrets if s in log]
        assert leaked == []
        # nor in check-config's summary
        checked = subprocess.run(
            [sys.executable, "-m", "daemon", "check-config", "-c", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stderr
        assert "satusehat" in checked.stdout and "OAuth2" in checked.stdout
        assert [s for s in secrets if s in checked.stdout + checked.stderr] == []


async def test_a_chain_search_encounter_condition_fills_each_id(
    tmp_path, db_url, store, credentials
):
    """A visit as a SIMRS sends it: the patient looked up by NIK, the Encounter after
    it naming the patient's id, the Condition after the Encounter naming its id; a
    lookup that finds no one fails, and what waits on it stays waiting."""
    async with FhirSimulator({CLIENT_ID: CLIENT_SECRET}, lifetime=300) as sim:
        health = free_port()
        config = write_config(tmp_path / "o.yaml", sim, db_url, health)
        pid, nik = PATIENTS[2][0], PATIENTS[2][1]
        lookup = f"Patient?identifier={NIK}|{nik}".encode()
        visit = encounter("REG-77", "Patient/{{after.id}}")
        diagnosis = condition("Encounter/{{after.id}}")
        diagnosis["subject"] = {"reference": "{{after/subject/reference}}"}
        batch = [
            NewMessage("satusehat", "patient", lookup, "search"),
            NewMessage(
                "satusehat", "visit", json.dumps(visit).encode(), "conditional-create",
                after_key="patient",
            ),
            NewMessage(
                "satusehat", "diagnosis", json.dumps(diagnosis).encode(), "create",
                after_key="visit",
            ),
            NewMessage("satusehat", "nobody", f"Patient?identifier={NIK}|0".encode(), "search"),
            NewMessage(
                "satusehat", "nobody-visit", json.dumps(visit).encode(), "conditional-create",
                after_key="nobody",
            ),
        ]  # fmt: skip
        ids = [r.id for r in store.enqueue_many(batch)]
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(
                lambda: statuses(store) == {"sent": 3, "failed": 1, "pending": 1},
                what="the chain sent, the lookup of nobody failed, its visit waiting",
            )
            assert await proc.stop() == 0
        finally:
            proc.kill()
        [stored_visit] = sim.of("Encounter")
        [stored_diagnosis] = sim.of("Condition")
        assert stored_visit["subject"]["reference"] == f"Patient/{pid}"
        assert stored_diagnosis["encounter"]["reference"] == f"Encounter/{stored_visit['id']}"
        assert stored_diagnosis["subject"]["reference"] == f"Patient/{pid}"
        nobody = store.message_timeline(ids[3])
        assert nobody is not None and nobody.last_error == (
            f"no Patient matches identifier={NIK}|0"
        )
        waiting = store.message_timeline(ids[4])
        assert waiting is not None and waiting.status == "pending" and waiting.attempts == 0


async def test_the_demo_traffic_chains_visits_to_the_simulator(
    tmp_path, db_url, store, credentials
):
    async with FhirSimulator({CLIENT_ID: CLIENT_SECRET}, lifetime=300) as sim:
        health = free_port()
        config = write_config(tmp_path / "o.yaml", sim, db_url, health)
        made = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.sim.traffic", "-c", str(config), "--count", "2",
            "--every", "0", cwd=ROOT,
        )  # fmt: skip
        assert await asyncio.wait_for(made.wait(), 60) == 0
        kinds = [(m.kind, m.after_id is not None) for m in Message.select().order_by(Message.id)]
        assert kinds == [("search", False), ("conditional-create", True), ("create", True)] * 2
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {"sent": 6}, what="two visits sent")
            assert await proc.stop() == 0
        finally:
            proc.kill()
        encounters = {e["id"]: e for e in sim.of("Encounter")}
        conditions = sim.of("Condition")
        assert len(encounters) == 2 and len(conditions) == 2
        for c in conditions:
            visit = encounters[c["encounter"]["reference"].split("/")[1]]
            assert c["subject"]["reference"] == visit["subject"]["reference"]
            assert visit["subject"]["reference"].startswith("Patient/P")
