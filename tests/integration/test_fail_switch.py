"""The demo's failure switch in each simulated partner, over real sockets: while it
is on, what they are sent fails the way that partner fails for a while (outboxd's
channel answers retry), and once it is off they take it again; and the
simulators started as the demo starts them read it from their --fail-switch file."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from daemon.channels.base import Envelope, Outcome, Verdict
from daemon.channels.http.channel import HttpChannel
from daemon.channels.http.settings import HttpSettings
from daemon.channels.mllp.channel import MllpChannel
from daemon.channels.mllp.settings import MllpSettings
from daemon.sim import fail
from daemon.sim.bpjs import BpjsSimulator
from daemon.sim.fail import FailSwitch
from daemon.sim.fhir import FhirSimulator
from daemon.sim.http import HttpSink
from daemon.sim.mllp import MllpSimulator
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

HL7 = (
    b"MSH|^~\\&|CLINIC|FAC|HIE|HIE|20240102030405||ADT^A04^ADT_A01|CTRL-1|P|2.5.1\r"
    b"EVN|A04|20240102030405\rPID|1||123^^^CLINIC^MR||Doe^Jane\rPV1|1|O\r"
)


def envelope(payload: bytes, kind: str) -> Envelope:
    return Envelope(id=1, key="k1", kind=kind, payload=payload, attempt=1)


@pytest.fixture
def switch(tmp_path: Path) -> Path:
    return tmp_path / "var" / "sim-fail"


async def test_the_mllp_receiver_answers_ae_while_on_which_the_demo_channel_retries(switch: Path):
    async with MllpSimulator() as sim:
        sim.fail_switch = FailSwitch(switch, "sim-mllp")
        settings = {"kind": "mllp", "host": "127.0.0.1", "port": sim.port,
                    "on_application_error": "retry"}  # fmt: skip
        channel = MllpChannel(MllpSettings.model_validate(settings))
        sender = channel.sender()
        try:
            fail.write_share(switch, 1.0)
            failed = await _after_a_look(sender.send, envelope(HL7, "hl7"), sim.fail_switch)
            assert failed.verdict is Verdict.RETRY, failed
            assert "simulated failure (100% of deliveries" in failed.detail
            assert not failed.transport_error  # the partner answered: the breaker stays shut
            fail.write_share(switch, 0.0)
            delivered = await _after_a_look(sender.send, envelope(HL7, "hl7"), sim.fail_switch)
            assert delivered.verdict is Verdict.DELIVERED, delivered
        finally:
            await sender.close()
            await channel.close()


async def test_the_http_sink_answers_503_while_on_and_takes_it_after(switch: Path):
    async with HttpSink() as sink:
        sink.fail_switch = FailSwitch(switch, "sim-http")
        channel = HttpChannel(HttpSettings.model_validate({"kind": "http", "url": sink.url("/h")}))
        sender = channel.sender()
        try:
            fail.write_share(switch, 1.0)
            failed = await _after_a_look(sender.send, envelope(b"{}", "json"), sink.fail_switch)
            assert failed.verdict is Verdict.RETRY, failed
            assert "503" in failed.detail
            assert sink.fail_switch.failed == 1
            fail.write_share(switch, 0.0)
            delivered = await _after_a_look(sender.send, envelope(b"{}", "json"), sink.fail_switch)
            assert delivered.verdict is Verdict.DELIVERED, delivered
        finally:
            await sender.close()
            await channel.close()


async def test_the_bpjs_and_fhir_simulators_answer_503_while_on(switch: Path):
    async with (
        BpjsSimulator("1", "s", "u") as bpjs,
        FhirSimulator({"client": "s3cret"}) as fhir,
        aiohttp.ClientSession() as http,
    ):
        bpjs.fail_switch = FailSwitch(switch, "sim-bpjs")
        fhir.fail_switch = FailSwitch(switch, "sim-fhir")
        async with http.post(
            fhir.token_url(), data={"client_id": "client", "client_secret": "s3cret"}
        ) as answer:
            token = (await answer.json())["access_token"]
        fail.write_share(switch, 1.0)

        async def answers() -> tuple[int, int]:
            async with http.post(bpjs.url("/antrean/updatewaktu"), data=b"{}") as a:
                first = a.status
            async with http.get(
                fhir.base_url() + "/Patient/none", headers={"Authorization": f"Bearer {token}"}
            ) as b:
                second, said = b.status, await b.json()
            assert second != 503 or "simulated failure" in json.dumps(said)
            return first, second

        await eventually(lambda: _is(answers, (503, 503)), "both fail")
        fail.write_share(switch, 0.0)
        await eventually(lambda: _is(answers, (401, 404)), "both answer as they would")


async def _is(ask: Callable[[], Awaitable[object]], wanted: object) -> bool:
    return await ask() == wanted


async def _after_a_look(
    send: Callable[[Envelope], Awaitable[Outcome]], what: Envelope, switch: FailSwitch
) -> Outcome:
    """Send once the simulator has had time to look at the switch again."""
    switch._checked = float("-inf")  # as after CHECK_EVERY: the next send looks
    return await send(what)


@pytest.fixture
async def sink_port(switch: Path) -> AsyncIterator[int]:
    """The HTTP sink as the demo runs it, reading ``switch``."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.sim.http", "--port", str(port),
        "--fail-switch", str(switch),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_simulator_process_reads_the_file_the_command_writes(switch: Path, sink_port: int):
    port = sink_port
    assert fail.main(["100%", "--file", str(switch)]) == 0

    async def status() -> int | None:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://127.0.0.1:{port}/hook", data=b"{}") as answer,
            ):
                return answer.status
        except aiohttp.ClientError:
            return None  # not listening yet

    await eventually(lambda: _is(status, 503), "the sink fails what it is sent", timeout=60)
    assert fail.main(["off", "--file", str(switch)]) == 0
    await eventually(lambda: _is(status, 200), "the sink takes it again")
