"""HL7 v2 over MLLP through the whole path: enqueue → dispatcher process → peer → ACK → row."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.channels.registry import prepare_payload
from daemon.config.loader import parse_config
from daemon.domain.messages import NewMessage
from daemon.hl7 import control_id, normalize
from daemon.sim.mllp import MllpSimulator, Rule
from daemon.store.models import Message
from daemon.store.sync import Store
from tests.integration.test_dispatcher import statuses
from tests.support.data import hl7_samples
from tests.support.ports import free_port
from tests.support.processes import ROOT, DaemonProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

DEMO = (ROOT / "config" / "demo" / "adt-a04.hl7").read_bytes()

CONFIG = """
database: {db_url}
channels:
  hie:
    kind: mllp
    host: 127.0.0.1
    port: {peer_port}
    concurrency: 2
    response_timeout: {response_timeout}
    on_application_error: {on_ae}
    lease: 10s
    retry: {{max_attempts: {attempts}, backoff: 0.2s, max_backoff: 0.3s}}
    breaker: {{failures: 3, cooldown: 0.5s}}
roles:
  dispatcher: {{base_port: {health_port}}}
control: {{port: {control_port}}}
"""


def configure(tmp_path: Path, db_url: str, peer_port: int, **overrides: str) -> tuple[Path, int]:
    health = free_port()
    values = {
        "db_url": db_url,
        "peer_port": peer_port,
        "health_port": health,
        "control_port": free_port(),
        "response_timeout": "5s",
        "on_ae": "reject",
        "attempts": "3",
        **overrides,
    }
    path = tmp_path / "o.yaml"
    path.write_text(CONFIG.format(**values))
    return path, health


def enqueue_hl7(store: Store, config: Path, messages: dict[str, bytes]) -> dict[str, int]:
    """Enqueue as the CLI does: checked and normalised for the channel first."""
    channel = parse_config(config.read_text(), environ={}).channels["hie"]
    batch = [
        NewMessage("hie", key, prepare_payload(channel, raw), "hl7")
        for key, raw in messages.items()
    ]
    return {key: r.id for key, r in zip(messages, store.enqueue_many(batch), strict=True)}


def demo(control: str) -> bytes:
    return DEMO.replace(b"DEMO-0001", control.encode())


async def test_every_sample_is_delivered_byte_for_byte_and_acked(tmp_path, db_url, store):
    samples = hl7_samples()
    async with MllpSimulator() as peer:
        config, health = configure(tmp_path, db_url, peer.port)
        ids = enqueue_hl7(store, config, {p.name: p.read_bytes() for p in samples})
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {"sent": len(samples)}, what="all sent")
        finally:
            assert await proc.stop() == 0
    # some samples share a control id, so compare the bytes themselves
    expected = sorted(normalize(sample.read_bytes()) for sample in samples)
    assert sorted(r.payload for r in peer.received) == expected
    for sample in samples:
        expected_id = control_id(normalize(sample.read_bytes()))
        row = Message.get_by_id(ids[sample.name])
        assert row.response.startswith("MSH|") and f"|AA|{expected_id}" in row.response


@pytest.mark.parametrize(
    ("rule", "on_ae", "status", "text"),
    [
        (Rule(code="AR", text="unknown patient"), "reject", "failed", "AR: unknown patient"),
        (Rule(code="CR", text="bad message"), "reject", "failed", "CR: bad message"),
        (Rule(code="AE", text="try later"), "reject", "failed", "AE: try later"),
        (Rule(code="AE", text="try later"), "retry", "failed", "gave up after 3 attempt(s)"),
        (Rule(code="CA"), "reject", "sent", None),
    ],
)
async def test_ack_codes_through_the_dispatcher(tmp_path, db_url, store, rule, on_ae, status, text):
    async with MllpSimulator([rule]) as peer:
        config, health = configure(tmp_path, db_url, peer.port, on_ae=on_ae)
        [message_id] = enqueue_hl7(store, config, {"a": demo("C-1")}).values()
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {status: 1}, what=status)
        finally:
            assert await proc.stop() == 0
    row = Message.get_by_id(message_id)
    if text:
        assert text in row.last_error
    assert len(peer.received) == (3 if on_ae == "retry" else 1)


async def test_no_ack_is_retried_with_the_same_bytes_and_control_id(tmp_path, db_url, store):
    async with MllpSimulator([Rule(action="no_ack", times=1)]) as peer:
        config, health = configure(tmp_path, db_url, peer.port, response_timeout="0.5s")
        [message_id] = enqueue_hl7(store, config, {"a": demo("C-42")}).values()
        proc = DaemonProcess(tmp_path, config)
        try:
            await proc.start(health)
            await eventually(lambda: statuses(store) == {"sent": 1}, what="sent after a retry")
        finally:
            assert await proc.stop() == 0
    assert [r.control_id for r in peer.received] == ["C-42", "C-42"]
    assert peer.received[0].payload == peer.received[1].payload
    row = Message.get_by_id(message_id)
    assert row.attempts == 2 and "no ACK" in row.last_error.replace("no answer", "no ACK")


async def test_peer_down_then_back(tmp_path, db_url, store):
    port = free_port()
    config, health = configure(tmp_path, db_url, port, attempts="1000")
    enqueue_hl7(store, config, {f"k{i}": demo(f"C-{i}") for i in range(5)})
    proc = DaemonProcess(tmp_path, config)
    peer = MllpSimulator()
    try:
        await proc.start(health)
        await eventually(
            lambda: sum(r.attempts for r in Message.select()) >= 3, what="failed attempts"
        )
        assert statuses(store).get("sent", 0) == 0
        await peer.start("127.0.0.1", port)
        await eventually(lambda: statuses(store) == {"sent": 5}, what="all sent once back")
        assert sorted(peer.control_ids) == [f"C-{i}" for i in range(5)]
    finally:
        assert await proc.stop() == 0
        await peer.stop()
