"""The MLLP channel against the MLLP simulator (and a few hand-made peers) over
real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.channels.base import Envelope, Outcome, Verdict
from daemon.channels.mllp.channel import MllpChannel, MllpSender
from daemon.channels.mllp.settings import MllpSettings, TlsSettings
from daemon.hl7 import build_ack, control_id, frame, normalize, read_ack, validate
from daemon.sim.mllp import MllpSimulator, Rule
from tests.services import unavailable
from tests.support.data import hl7_samples
from tests.support.processes import PROCESS_WAIT
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(30), pytest.mark.both_loops]

ROOT = Path(__file__).resolve().parents[2]


def message(cid: str = "CTRL-1", pid: str = "123") -> bytes:
    return validate(
        f"MSH|^~\\&|CLINIC|FAC|HIE|HIE|20240102030405||ADT^A04^ADT_A01|{cid}|P|2.5.1\r"
        f"EVN|A04|20240102030405\rPID|1||{pid}^^^CLINIC^MR||Doe^Jane\rPV1|1|O\r".encode()
    ).payload


def envelope(payload: bytes, attempt: int = 1) -> Envelope:
    return Envelope(id=1, key=control_id(payload), kind="hl7", payload=payload, attempt=attempt)


@pytest.fixture
async def sim() -> AsyncIterator[MllpSimulator]:
    async with MllpSimulator() as s:
        yield s


@pytest.fixture
async def make_channel() -> AsyncIterator[Callable[..., MllpChannel]]:
    made: list[MllpChannel] = []

    def make(port: int, **settings: object) -> MllpChannel:
        values = {"kind": "mllp", "host": "127.0.0.1", "port": port, "response_timeout": 2.0}
        channel = MllpChannel(MllpSettings.model_validate({**values, **settings}))
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


@pytest.fixture
def sender(sim: MllpSimulator, make_channel: Callable[..., MllpChannel]) -> MllpSender:
    return make_channel(sim.port).sender()


def assert_retry(outcome: Outcome, pattern: str, transport_error: bool = True) -> None:
    assert outcome.verdict is Verdict.RETRY, outcome
    assert outcome.transport_error is transport_error, outcome
    assert re.search(pattern, outcome.detail), outcome.detail


# --- acknowledgment codes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "on_application_error", "verdict"),
    [
        ("AA", "reject", Verdict.DELIVERED),
        ("CA", "reject", Verdict.DELIVERED),
        ("AR", "reject", Verdict.REJECTED),
        ("CR", "reject", Verdict.REJECTED),
        ("AR", "retry", Verdict.REJECTED),  # a reject is never retried
        ("AE", "reject", Verdict.REJECTED),
        ("CE", "reject", Verdict.REJECTED),
        ("AE", "retry", Verdict.RETRY),
        ("CE", "retry", Verdict.RETRY),
    ],
)
async def test_ack_code_decides_the_outcome(
    sim: MllpSimulator,
    make_channel: Callable[..., MllpChannel],
    code: str,
    on_application_error: str,
    verdict: Verdict,
) -> None:
    sim.rules = [Rule(code=code, text="visit | unknown")]
    sender = make_channel(sim.port, on_application_error=on_application_error).sender()
    outcome = await sender.send(envelope(message("C-1")))
    assert outcome.verdict is verdict, outcome
    assert outcome.transport_error is False
    ack = read_ack(outcome.response.encode())
    assert (ack.code, ack.control_id) == (code, "C-1")
    if verdict is not Verdict.DELIVERED:
        assert f"answered {code}: visit | unknown" in outcome.detail
    # the stream is in step after any ACK: the connection is kept
    assert (await sender.send(envelope(message("C-2")))).verdict is verdict
    assert sim.connections == 1
    assert sim.control_ids == ["C-1", "C-2"]


async def test_rules_pick_messages_by_pattern(sim: MllpSimulator, sender: MllpSender) -> None:
    sim.rules = [Rule(code="AR", match=rb"PID\|1\|\|666\^", text="blocked patient")]
    outcomes = [await sender.send(envelope(message(f"M{p}", p))) for p in ("1", "666", "7")]
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED, Verdict.REJECTED, Verdict.DELIVERED]
    assert "blocked patient" in outcomes[1].detail


# --- broken answers -------------------------------------------------------------------


async def test_ack_for_another_message_drops_the_connection(
    sim: MllpSimulator, sender: MllpSender
) -> None:
    sim.rules = [Rule(action="wrong_id", times=1)]
    outcome = await sender.send(envelope(message("C-1")))
    assert_retry(outcome, r"acknowledges 'NOT-C-1', not the message sent \('C-1'\)")
    assert not sender.connected
    assert (await sender.send(envelope(message("C-1")))).verdict is Verdict.DELIVERED
    assert sim.connections == 2


async def test_an_ack_that_arrives_while_idle_is_read_first_and_resynchronises(
    sim: MllpSimulator, sender: MllpSender
) -> None:
    # the peer answers C-1 twice: the second ACK waits in the connection until the
    # next send, which reads it first, sees another message's ACK and reconnects
    first = message("C-1")
    twice = frame(build_ack(first)) + frame(build_ack(first))
    sim.rules = [Rule(action="garbage", garbage=twice, times=1)]
    assert (await sender.send(envelope(first))).verdict is Verdict.DELIVERED
    # the duplicate arrives while no send waits: it stays in the connection's buffer
    duplicate = len(frame(build_ack(first)))
    await eventually(lambda: sender._conn.decoder.pending >= duplicate, "the duplicate ACK")
    outcome = await sender.send(envelope(message("C-2")))
    assert_retry(outcome, r"acknowledges 'C-1', not the message sent \('C-2'\)")
    assert not sender.connected
    assert (await sender.send(envelope(message("C-2")))).verdict is Verdict.DELIVERED
    assert sim.connections == 2


async def test_an_ack_in_pieces_is_put_together() -> None:
    async def answer_slowly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                data = await reader.readuntil(b"\x1c\r")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            ack = frame(build_ack(data[1:-2]))
            for start in range(0, len(ack), 7):  # seven bytes at a time
                writer.write(ack[start : start + 7])
                await writer.drain()
                await asyncio.sleep(0.002)
        writer.close()

    server = await asyncio.start_server(answer_slowly, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = {"kind": "mllp", "host": "127.0.0.1", "port": port}
    sender = MllpChannel(MllpSettings.model_validate(settings)).sender()
    try:
        for n in range(3):
            outcome = await sender.send(envelope(message(f"P-{n}")))
            assert outcome.verdict is Verdict.DELIVERED, outcome
            assert read_ack(outcome.response.encode()).control_id == f"P-{n}"
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()


async def test_no_ack_times_out_and_the_same_bytes_are_resent(
    sim: MllpSimulator, make_channel: Callable[..., MllpChannel]
) -> None:
    sim.rules = [Rule(action="no_ack", times=1)]
    sender = make_channel(sim.port, response_timeout=0.3).sender()
    payload = message("ONCE-ONLY")
    started = time.monotonic()
    # the simulator never answers it: only the response timeout ends the send
    assert_retry(await sender.send(envelope(payload)), r"no ACK from .* within 0.3s")
    assert time.monotonic() - started > 0.25  # the timeout was waited for
    outcome = await sender.send(envelope(payload, attempt=2))
    assert outcome.verdict is Verdict.DELIVERED
    assert [r.payload for r in sim.received] == [payload, payload]
    assert sim.control_ids == ["ONCE-ONLY", "ONCE-ONLY"]
    assert [r.connection for r in sim.received] == [1, 2]  # the silent connection was dropped


async def test_a_slow_ack_within_the_timeout_is_fine(
    sim: MllpSimulator, make_channel: Callable[..., MllpChannel]
) -> None:
    sim.rules = [Rule(delay=0.2)]
    sender = make_channel(sim.port, response_timeout=1.0).sender()
    started = time.monotonic()
    assert (await sender.send(envelope(message()))).verdict is Verdict.DELIVERED
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("garbage", "pattern"),
    [
        (frame(b"this is not an HL7 acknowledgment"), r"garbled answer .*no MSH segment"),
        (frame(b"MSH|^~\\&|A|B|C|D|T||ACK|1|P|2.5\rMSA|OK|C-1\r"), r"'OK' is not an ack"),
        (frame(b"MSH|^~\\&|A|B|C|D|T||ACK|1|P|2.5\r"), r"no MSA segment"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", r"outside an MLLP frame"),
        (b"\x0bMSH|^~\\&|A\x1c\n", r"0x1C not followed by 0x0D"),
    ],
)
async def test_garbled_answers_are_retried(
    sim: MllpSimulator, sender: MllpSender, garbage: bytes, pattern: str
) -> None:
    sim.rules = [Rule(action="garbage", garbage=garbage, times=1)]
    assert_retry(await sender.send(envelope(message("C-1"))), pattern)
    assert not sender.connected
    assert (await sender.send(envelope(message("C-1")))).verdict is Verdict.DELIVERED


async def test_an_oversized_answer_is_garbage(sim: MllpSimulator, sender: MllpSender) -> None:
    sim.rules = [Rule(action="garbage", garbage=b"\x0b" + b"A" * (1 << 20) + b"B" * 100)]
    assert_retry(await sender.send(envelope(message())), r"larger than 1048576 bytes")


async def test_peer_closing_without_an_answer(sim: MllpSimulator, sender: MllpSender) -> None:
    sim.rules = [Rule(action="drop", times=1)]
    assert_retry(await sender.send(envelope(message())), r"closed by the peer before it sent")
    assert (await sender.send(envelope(message()))).verdict is Verdict.DELIVERED
    assert sim.connections == 2


async def test_peer_closing_mid_ack(sim: MllpSimulator, sender: MllpSender) -> None:
    sim.rules = [Rule(action="close_mid_ack", times=1)]
    assert_retry(await sender.send(envelope(message())), r"closed by the peer mid-ACK \(\d+ bytes")
    assert (await sender.send(envelope(message()))).verdict is Verdict.DELIVERED


async def test_peer_resetting_mid_message(make_channel: Callable[..., MllpChannel]) -> None:
    """A peer that reads a little of a large message, then resets the connection."""

    async def reset_after_a_few_bytes(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(100)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # linger 0: RST, not FIN

    server = await asyncio.start_server(reset_after_a_few_bytes, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        big = message().rstrip(b"\r") + b"\rOBX|1|ED|||" + b"A" * (8 << 20) + b"\r"
        outcome = await make_channel(port).sender().send(envelope(big))
        assert_retry(outcome, r"connection to 127.0.0.1:\d+ lost: .*(reset|pipe|closed)")
    finally:
        server.close()
        await server.wait_closed()


# --- connecting -------------------------------------------------------------------------


async def test_peer_down_then_back(make_channel: Callable[..., MllpChannel]) -> None:
    probe = MllpSimulator()
    port = await probe.start()
    await probe.stop()
    sender = make_channel(port).sender()
    outcome = await sender.send(envelope(message()))
    assert_retry(outcome, rf"cannot connect to 127.0.0.1:{port}: .*refused")
    back = MllpSimulator()
    await back.start(port=port)
    try:
        assert (await sender.send(envelope(message()))).verdict is Verdict.DELIVERED
        assert back.control_ids == ["CTRL-1"]
    finally:
        await back.stop()


async def test_peer_restart_while_connected(
    sim: MllpSimulator, make_channel: Callable[..., MllpChannel]
) -> None:
    sender = make_channel(sim.port).sender()
    assert (await sender.send(envelope(message("C-1")))).verdict is Verdict.DELIVERED
    port = sim.port
    conn = sender._conn
    await sim.stop()  # aborts the open connection
    await eventually(lambda: conn.stale, "the sender to see its connection closed")
    again = MllpSimulator()
    await again.start(port=port)
    try:
        # the dead connection is noticed before sending: no failed attempt
        assert (await sender.send(envelope(message("C-2")))).verdict is Verdict.DELIVERED
        assert again.control_ids == ["C-2"]
    finally:
        await again.stop()


async def test_connect_timeout(make_channel: Callable[..., MllpChannel], tls: TlsFiles) -> None:
    """A peer that accepts TCP but never answers the TLS handshake."""

    hung_up = asyncio.Event()

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # the ClientHello, then nothing until the client hangs up
        hung_up.set()
        writer.close()

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        settings = {"connect_timeout": 0.3, "tls": {"ca_file": str(tls.ca)}}
        # the handshake is never answered: only the connect timeout ends the send
        outcome = await make_channel(port, **settings).sender().send(envelope(message()))
        assert_retry(outcome, r"cannot connect to .*no answer within 0.3s")
        await hung_up.wait()  # the connection given up on was closed
    finally:
        silent.close()
        await silent.wait_closed()


async def test_payloads_that_cannot_be_sent_are_rejected_without_connecting(
    sim: MllpSimulator, sender: MllpSender
) -> None:
    not_hl7 = await sender.send(Envelope(1, "k", "json", b'{"a": 1}', 1))
    assert not_hl7.verdict is Verdict.REJECTED
    assert "not an HL7 v2 message" in not_hl7.detail
    framing = await sender.send(envelope(message().replace(b"Doe", b"D\x1ce")))
    assert framing.verdict is Verdict.REJECTED
    assert "framing byte" in framing.detail
    assert sim.connections == 0


async def test_cancelled_send_drops_the_connection(sim: MllpSimulator, sender: MllpSender) -> None:
    sim.rules = [Rule(action="no_ack", times=1)]
    task = asyncio.create_task(sender.send(envelope(message("C-1"))))
    await sim.wait_for(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not sender.connected
    assert (await sender.send(envelope(message("C-2")))).verdict is Verdict.DELIVERED
    assert sim.connections == 2


async def test_close_then_send_reconnects(sim: MllpSimulator, sender: MllpSender) -> None:
    assert (await sender.send(envelope(message()))).verdict is Verdict.DELIVERED
    await sender.close()
    await sender.close()  # twice is harmless
    assert (await sender.send(envelope(message()))).verdict is Verdict.DELIVERED
    assert sim.connections == 2


async def test_channel_close_closes_every_sender(
    sim: MllpSimulator, make_channel: Callable[..., MllpChannel]
) -> None:
    channel = make_channel(sim.port)
    senders = [channel.sender() for _ in range(3)]
    for s in senders:
        assert (await s.send(envelope(message()))).verdict is Verdict.DELIVERED
    assert sim.connections == 3
    await channel.close()
    assert not any(s.connected for s in senders)


@pytest.mark.parametrize("encoding", ["utf-16", "cp037", "rot13", "idna", "utf-7"])
def test_an_encoding_mllp_cannot_carry_is_refused_by_the_settings(encoding: str) -> None:
    with pytest.raises(ValueError, match="ASCII-compatible"):
        MllpSettings(kind="mllp", host="127.0.0.1", port=2575, encoding=encoding)


# --- every sample -----------------------------------------------------------------------


async def test_every_sample_is_delivered_byte_for_byte(
    sim: MllpSimulator, sender: MllpSender
) -> None:
    for path in hl7_samples():
        payload = validate(path.read_bytes()).payload
        assert payload == normalize(path.read_bytes())
        outcome = await sender.send(envelope(payload))
        assert outcome.verdict is Verdict.DELIVERED, (path.name, outcome)
        assert sim.received[-1].payload == payload, path.name
        assert read_ack(outcome.response.encode()).control_id == control_id(payload)
    assert sim.connections == 1


# --- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # signed the server and client certificates
    other_ca: Path  # signed nothing we use
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_ca(name: str, cwd: Path) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=cwd)  # fmt: skip


def make_cert(name: str, ca: str, san: str, cwd: Path) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=cwd)  # fmt: skip


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFiles]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate it signed, and an unrelated CA, made with the openssl CLI (the
    ``cryptography`` package is not a dependency)."""
    d = tmp_path_factory.mktemp("tls")
    try:
        make_ca("ca", d)
        make_ca("other", d)
        make_cert("server", "ca", "IP:127.0.0.1,DNS:localhost", d)
        make_cert("client", "ca", "DNS:outboxd-client", d)
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable("the openssl command", exc, "install openssl (Debian: apt-get install openssl)")
    yield TlsFiles(d / "ca.pem", d / "other.pem", d / "server.pem", d / "server.key",
                   d / "client.pem", d / "client.key")  # fmt: skip


def server_context(tls: TlsFiles, require_client: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    if require_client:
        context.load_verify_locations(tls.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
async def tls_sim(tls: TlsFiles) -> AsyncIterator[MllpSimulator]:
    async with MllpSimulator(ssl_context=server_context(tls)) as s:
        yield s


@pytest.mark.parametrize(
    "tls_settings",
    [
        {"ca_file": "CA"},
        {"ca_file": "CA", "server_hostname": "localhost"},
        {"ca_file": "OTHER", "verify": False},
    ],
    ids=["verified", "verified-by-name", "unverified"],
)
async def test_tls_delivers(
    tls: TlsFiles,
    tls_sim: MllpSimulator,
    make_channel: Callable[..., MllpChannel],
    tls_settings: dict[str, object],
) -> None:
    files = {"CA": str(tls.ca), "OTHER": str(tls.other_ca)}
    settings = {k: files.get(v, v) if isinstance(v, str) else v for k, v in tls_settings.items()}
    sender = make_channel(tls_sim.port, tls=settings).sender()
    for cid in ("T-1", "T-2"):
        assert (await sender.send(envelope(message(cid)))).verdict is Verdict.DELIVERED
    assert tls_sim.control_ids == ["T-1", "T-2"]
    assert tls_sim.connections == 1


@pytest.mark.parametrize(
    ("tls_settings", "pattern"),
    [
        ({"ca_file": "OTHER"}, r"not accepted: unable to get local issuer"),
        ({"ca_file": "CA", "server_hostname": "hie.example"}, r"not accepted: Hostname mismatch"),
    ],
    ids=["wrong-ca", "wrong-name"],
)  # fmt: skip
async def test_tls_refuses_an_unverified_peer(
    tls: TlsFiles,
    tls_sim: MllpSimulator,
    make_channel: Callable[..., MllpChannel],
    tls_settings: dict[str, str],
    pattern: str,
) -> None:
    files = {"CA": str(tls.ca), "OTHER": str(tls.other_ca)}
    settings = {k: files.get(v, v) for k, v in tls_settings.items()}
    sender = make_channel(tls_sim.port, tls=settings).sender()
    outcome = await sender.send(envelope(message()))
    assert_retry(outcome, r"cannot connect to 127.0.0.1:\d+: TLS certificate " + pattern)
    assert not sender.connected
    assert tls_sim.received_count == 0


async def test_mutual_tls(tls: TlsFiles, make_channel: Callable[..., MllpChannel]) -> None:
    async with MllpSimulator(ssl_context=server_context(tls, require_client=True)) as sim:
        with_cert = TlsSettings(
            ca_file=str(tls.ca), cert_file=str(tls.client_cert), key_file=str(tls.client_key)
        )
        sender = make_channel(sim.port, tls=with_cert.model_dump()).sender()
        assert (await sender.send(envelope(message()))).verdict is Verdict.DELIVERED
        anonymous = make_channel(sim.port, tls={"ca_file": str(tls.ca)}).sender()
        outcome = await anonymous.send(envelope(message()))
        assert outcome.verdict is Verdict.RETRY and outcome.transport_error, outcome
        assert sim.received_count == 1


# --- the simulator itself ---------------------------------------------------------------------


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 2)
    writer.close()
    return answer


async def test_simulator_refuses_what_is_not_hl7(sim: MllpSimulator) -> None:
    answer = await raw_exchange(sim.port, frame(b"hello"))
    ack = read_ack(answer[1:-2])
    assert (ack.code, ack.control_id) == ("AR", "")
    assert "not an HL7 message" in ack.text
    assert sim.received[0].control_id is None


async def test_simulator_answers_pipelined_frames_in_order(sim: MllpSimulator) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(b"".join(frame(message(f"P-{n}")) for n in range(5)))
    acks = [read_ack((await reader.readuntil(b"\x1c\r"))[1:-2]) for _ in range(5)]
    writer.close()
    assert [a.control_id for a in acks] == [f"P-{n}" for n in range(5)]


async def test_canned_simulator(make_channel: Callable[..., MllpChannel]) -> None:
    async with MllpSimulator([Rule(code="AR")], canned=True) as sim:
        sender = make_channel(sim.port).sender()
        for n in range(3):
            outcome = await sender.send(envelope(message(f"K-{n}")))
            assert outcome.verdict is Verdict.DELIVERED  # canned mode ignores rules
            assert read_ack(outcome.response.encode()).control_id == f"K-{n}"
        assert sim.received_count == 3
        assert list(sim.received) == []  # nothing kept but the count


async def test_canned_simulator_frames_split_pipelined_and_broken() -> None:
    async with MllpSimulator(canned=True) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        stream = b"".join(frame(message(f"C-{n}")) for n in range(4))
        writer.write(stream[:-20])  # three whole frames and most of the fourth
        await writer.drain()
        await eventually(lambda: sim.received_count == 3, "the three whole frames")
        writer.write(stream[-20:])
        acks = [read_ack((await reader.readuntil(b"\x1c\r"))[1:-2]) for _ in range(4)]
        assert [(a.code, a.control_id) for a in acks] == [("AA", f"C-{n}") for n in range(4)]
        writer.write(b"not MLLP at all")  # bytes outside a frame: the connection is closed
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", sim.port)
        await eventually(lambda: sim.connections == 2, "the idle connection accepted")
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # stop() closed it
    idle_writer.close()


def test_rule_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        Rule(action="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown acknowledgment code"):
        Rule(code="OK")


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
async def test_simulator_runs_as_a_process(make_channel: Callable[..., MllpChannel]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.sim.mllp", "--port", "0", "--reject", "PID\\|1\\|\\|666",
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        found = None
        while found is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 10)).decode()
            assert line, "the simulator exited before listening"
            found = re.search(r"listening on 127.0.0.1:(\d+)", line)
        port = int(found.group(1))
        sender = make_channel(port).sender()
        assert (await sender.send(envelope(message("P-1")))).verdict is Verdict.DELIVERED
        assert (await sender.send(envelope(message("P-2", "666")))).verdict is Verdict.REJECTED
        await sender.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), PROCESS_WAIT) == 0
        rest = (await process.stderr.read()).decode()
        assert "stopped after 2 message(s) on 1 connection(s)" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.timeout(3 * PROCESS_WAIT)  # a process: slow to start on a loaded machine
async def test_simulator_process_fails_on_a_busy_port(sim: MllpSimulator) -> None:
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.sim.mllp", "--port", str(sim.port),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(done.communicate(), PROCESS_WAIT)
    assert done.returncode == 1
    assert b"cannot listen on 127.0.0.1" in err


async def test_whitespace_between_frames_is_skipped(
    sim: MllpSimulator, sender: MllpSender, caplog: pytest.LogCaptureFixture
) -> None:
    payload = message("C-1")
    ack = b"\r\n \r\n" + frame(build_ack(payload)) + b"\n"
    sim.rules = [Rule(action="garbage", garbage=ack, times=2)]
    with caplog.at_level("WARNING", logger="outboxd.channels.mllp"):
        assert (await sender.send(envelope(payload))).verdict is Verdict.DELIVERED
        assert (await sender.send(envelope(payload))).verdict is Verdict.DELIVERED
    assert sim.connections == 1
    warnings = [r for r in caplog.records if "whitespace outside MLLP frames" in r.message]
    assert len(warnings) == 1  # once per connection
