"""The HTTP channel against a real aiohttp server (``HttpSink``) on 127.0.0.1."""

import asyncio
import base64
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from daemon.channels.base import Envelope, Verdict
from daemon.channels.http.channel import HttpChannel
from daemon.channels.http.settings import HttpSettings
from daemon.sim.http import Faults, HttpSink

pytestmark = pytest.mark.timeout(30)

PAYLOAD = b'{"kodebooking": "0001K0011124", "taskid": 3,  "note": "caf\xc3\xa9"}'


def envelope(key: str = "0001K0011124-3", payload: bytes = PAYLOAD, attempt: int = 1) -> Envelope:
    return Envelope(id=1, key=key, kind="task", payload=payload, attempt=attempt)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as s:
        yield s


@pytest.fixture
async def make_channel() -> AsyncIterator[Callable[..., HttpChannel]]:
    made: list[HttpChannel] = []

    def make(url: str, **settings: object) -> HttpChannel:
        channel = HttpChannel(HttpSettings.model_validate({"kind": "http", "url": url, **settings}))
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


@pytest.fixture
def channel(sink: HttpSink, make_channel: Callable[..., HttpChannel]) -> HttpChannel:
    return make_channel(sink.url("/hooks/visits"))


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: a connect to it is refused, and no one else can
    take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


# --- the request ---------------------------------------------------------------------


async def test_request_carries_body_key_and_default_headers(sink, channel):
    outcome = await channel.sender().send(envelope())

    assert outcome.verdict is Verdict.DELIVERED
    [request] = sink.requests
    assert request.method == "POST"
    assert request.path == "/hooks/visits"
    assert request.body == PAYLOAD  # byte for byte
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "0001K0011124-3"
    assert request.headers["User-Agent"].startswith("outboxd/")
    assert "Authorization" not in request.headers


async def test_configured_method_and_headers_win_over_defaults(sink, make_channel):
    channel = make_channel(
        sink.url("/fhir?tenant=a"),
        method="PUT",
        headers={"content-type": "application/fhir+json", "X-Tenant": "a"},
    )
    assert (await channel.sender().send(envelope())).verdict is Verdict.DELIVERED
    [request] = sink.requests
    assert request.method == "PUT"
    assert request.path == "/fhir?tenant=a"
    assert request.headers.getall("Content-Type") == ["application/fhir+json"]
    assert request.headers["X-Tenant"] == "a"


async def test_idempotency_key_is_the_same_on_every_attempt(sink, channel):
    sender = channel.sender()
    await sender.send(envelope(attempt=1))
    await sender.send(envelope(attempt=2))
    await sender.send(envelope(key="ünïcode key", attempt=1))
    keys = [r.headers["Idempotency-Key"] for r in sink.requests]
    assert keys == ["0001K0011124-3", "0001K0011124-3", "%C3%BCn%C3%AFcode%20key"]


async def test_configured_idempotency_header_cannot_override_the_key(sink, make_channel):
    channel = make_channel(sink.url(), headers={"idempotency-key": "fixed"})
    await channel.sender().send(envelope(key="k-9"))
    assert sink.requests[0].headers.getall("Idempotency-Key") == ["k-9"]


async def test_bearer_token_arrives(sink, make_channel):
    sink.faults.bearer_token = "tok-3f9a2c"
    channel = make_channel(sink.url(), auth={"type": "bearer", "token": "tok-3f9a2c"})
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.DELIVERED
    assert sink.requests[0].headers["Authorization"] == "Bearer tok-3f9a2c"


async def test_basic_auth_arrives(sink, make_channel):
    sink.faults.basic = ("klinik", "pässwört")
    channel = make_channel(
        sink.url(), auth={"type": "basic", "username": "klinik", "password": "pässwört"}
    )
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.DELIVERED
    expected = base64.b64encode("klinik:pässwört".encode()).decode()
    assert sink.requests[0].headers["Authorization"] == f"Basic {expected}"


async def test_wrong_token_is_rejected_without_showing_it(sink, make_channel):
    sink.faults.bearer_token = "the-right-one"
    channel = make_channel(sink.url(), auth={"type": "bearer", "token": "a-wrong-token"})
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail.startswith("HTTP 401 Unauthorized")
    assert "a-wrong-token" not in outcome.detail


@pytest.mark.parametrize("header", [None, "X-Hub-Signature-256"])
async def test_hmac_signature_verifies_against_the_exact_body(sink, make_channel, header):
    hmac_settings = {"secret": "whsec-51f0"} | ({"header": header} if header else {})
    sink.faults.hmac_secret = "whsec-51f0"
    sink.faults.hmac_header = header or "X-Outboxd-Signature"
    channel = make_channel(sink.url(), hmac=hmac_settings)

    outcome = await channel.sender().send(envelope())

    assert outcome.verdict is Verdict.DELIVERED  # the sink checked it too
    request = sink.requests[0]
    digest = hmac.new(b"whsec-51f0", request.body, hashlib.sha256).hexdigest()
    assert request.headers[header or "X-Outboxd-Signature"] == f"sha256={digest}"


async def test_wrong_hmac_secret_is_refused_by_the_peer(sink, make_channel):
    sink.faults.hmac_secret = "peer-secret"
    channel = make_channel(sink.url(), hmac={"secret": "our-old-secret"})
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.REJECTED
    assert "401" in outcome.detail
    assert "our-old-secret" not in outcome.detail


# --- the answer -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"), [(200, b'{"ok": true}'), (201, b'{"id": 42}'), (204, b"")]
)
async def test_2xx_is_delivered_with_the_body_as_response(sink, channel, status, body):
    sink.faults = Faults(status=status, body=body)
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.response == body.decode()
    assert outcome.detail.startswith(f"HTTP {status}")


async def test_response_is_decoded_by_its_charset(sink, channel):
    sink.faults = Faults(
        body="diterima: café".encode("latin-1"),
        headers={"Content-Type": "text/plain; charset=latin-1"},
    )
    assert (await channel.sender().send(envelope())).response == "diterima: café"


async def test_a_huge_answer_is_truncated_with_a_marker(sink, channel):
    sink.faults = Faults(status=200, body=b"x" * 200_000)
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.response is not None
    assert outcome.response.startswith("x" * 65536)
    assert outcome.response.endswith("[truncated: only the first 65536 bytes kept]")
    assert len(outcome.response) < 65536 + 100


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_4xx_is_rejected_with_status_and_body(sink, channel, status):
    sink.faults = Faults(status=status, body=b'{"metadata": {"message": "Task 3 sudah ada"}}')
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.detail.startswith(f"HTTP {status} ")
    assert "Task 3 sudah ada" in outcome.detail
    assert outcome.response == '{"metadata": {"message": "Task 3 sudah ada"}}'


async def test_a_long_rejection_body_stays_a_short_detail(sink, channel):
    sink.faults = Faults(status=400, body=b"error " * 20_000)
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.REJECTED
    assert len(outcome.detail) < 300
    assert "\n" not in outcome.detail
    assert outcome.response is not None and "[truncated" in outcome.response


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_transient_statuses_retry(sink, channel, status):
    sink.faults = Faults(status=status, body=b"try later")
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is False
    assert outcome.retry_after is None
    assert outcome.response == "try later"
    assert outcome.detail.startswith(f"HTTP {status} ")


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_is_honoured(sink, channel, status):
    sink.faults = Faults(status=status, headers={"Retry-After": "120"})
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after == 120.0
    assert "retry after 120s" in outcome.detail


async def test_retry_after_http_date_is_honoured(sink, channel):
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=90)
    sink.faults = Faults(status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after is not None
    assert 85 <= outcome.retry_after <= 90


@pytest.mark.parametrize("value", ["soon", "-1", "Tue, 99 Nov 2026 99:00:00 GMT"])
async def test_malformed_retry_after_is_ignored(sink, channel, value):
    sink.faults = Faults(status=503, headers={"Retry-After": value})
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after is None


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_not_followed_and_rejected(sink, channel, status):
    sink.faults = Faults(status=status, headers={"Location": sink.url("/moved/SECRET-PATH")})
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.REJECTED
    assert f"HTTP {status} " in outcome.detail
    assert f"redirect to http://127.0.0.1:{sink.port} not followed" in outcome.detail
    assert "SECRET-PATH" not in outcome.detail
    assert [r.path for r in sink.requests] == ["/hooks/visits"]  # nothing sent to /moved


async def test_fails_first_then_succeeds(sink, channel):
    sink.faults = Faults(fail_first=2, fail_status=502)
    sender = channel.sender()
    verdicts = [(await sender.send(envelope(attempt=n))).verdict for n in (1, 2, 3)]
    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.DELIVERED]


# --- transport failures ---------------------------------------------------------------


async def test_timeout_retries_as_transport_error(sink, make_channel):
    sink.faults = Faults(delay=3600)  # no answer within the test: only the timeout ends the send
    channel = make_channel(sink.url(), timeout=0.3)
    sender = channel.sender()
    outcome = await sender.send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is True
    assert outcome.detail == "no response within 0.3s"
    assert len(sink.requests) == 1  # it did arrive: the repeat carries the same key
    sink.faults = Faults()
    assert (await sender.send(envelope())).verdict is Verdict.DELIVERED
    first, repeat = sink.requests
    assert repeat.peer != first.peer  # the connection given up on was closed, not reused


async def test_connection_refused_retries_as_transport_error(make_channel, closed_port):
    channel = make_channel(f"http://127.0.0.1:{closed_port}/hooks/SECRET-PATH")
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is True
    assert outcome.detail.startswith(f"cannot connect to 127.0.0.1:{closed_port}")
    assert "SECRET-PATH" not in outcome.detail


async def test_dns_failure_retries_as_transport_error(make_channel):
    channel = make_channel("http://outboxd-test.invalid/hook", timeout=3)
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is True
    # a resolver that does not answer at all ends in the timeout instead
    assert outcome.detail in ("DNS lookup failed for outboxd-test.invalid", "no response within 3s")


async def test_dropped_connection_retries_as_transport_error(sink, channel):
    sink.faults = Faults(drop=True)
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.transport_error is True
    assert "closed the connection without answering" in outcome.detail
    assert sink.requests  # it arrived before the drop


def test_a_header_that_could_inject_another_is_refused_by_the_settings():
    with pytest.raises(ValueError, match="character HTTP headers cannot carry"):
        HttpSettings.model_validate(
            {"kind": "http", "url": "http://x", "headers": {"X-Api-Key": "k\r\nInjected: 1"}}
        )


async def test_cancellation_propagates(sink, channel):
    sink.faults = Faults(delay=5)
    task = asyncio.create_task(channel.sender().send(envelope()))
    while not sink.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- the session ----------------------------------------------------------------------


async def test_senders_share_one_session_and_a_pool_of_concurrency(sink, make_channel):
    sink.faults = Faults(delay=0.2)
    channel = make_channel(sink.url(), concurrency=3)
    senders = [channel.sender() for _ in range(3)]
    assert channel.session is None  # created on the first send, in the loop

    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(senders[i % 3].send(envelope(key=f"k-{i}")) for i in range(6))
    )
    elapsed = time.monotonic() - started

    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 6
    assert {r.headers["Idempotency-Key"] for r in sink.requests} == {f"k-{i}" for i in range(6)}
    assert len({r.peer for r in sink.requests}) == 3  # three connections, reused
    assert elapsed >= 0.35  # six 0.2 s answers through three connections: two rounds
    session = channel.session
    assert session is not None
    await senders[0].close()  # a worker leaving does not close the shared session
    assert not session.closed
    assert (await senders[1].send(envelope())).verdict is Verdict.DELIVERED


async def test_sequential_sends_reuse_one_connection(sink, channel):
    sender = channel.sender()
    for i in range(3):
        await sender.send(envelope(key=f"k-{i}"))
    assert len({r.peer for r in sink.requests}) == 1


async def test_close_releases_the_session(sink, channel):
    sender = channel.sender()
    assert (await sender.send(envelope())).verdict is Verdict.DELIVERED
    session = channel.session
    assert session is not None and not session.closed

    await channel.close()

    assert session.closed
    assert channel.session is None
    outcome = await sender.send(envelope())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.detail == "channel is closed"
    assert len(sink.requests) == 1
    await channel.close()  # twice is harmless


async def test_close_before_any_send(make_channel):
    channel = make_channel("http://127.0.0.1:9/never")
    await channel.close()
    assert channel.session is None


async def test_a_json_body_names_its_prerequisites_answer(sink, channel):
    payload = b'{"visit": "{{after/data/id}}", "n": 1}'
    answer = '{"data": {"id": "V-9"}}'
    outcome = await channel.sender().send(Envelope(2, "k2", "json", payload, 1, answer))
    assert outcome.verdict is Verdict.DELIVERED
    assert sink.requests[-1].json() == {"visit": "V-9", "n": 1}
    missing = await channel.sender().send(Envelope(3, "k3", "json", payload, 1, '{"data": {}}'))
    assert missing.verdict is Verdict.REJECTED and "/data/id" in missing.detail
    assert len(sink.requests) == 1
