"""OAuth2 client credentials over real sockets: the ``http`` channel and the
``status_check`` job get their tokens from the token simulator
(``daemon.sim.oauth``) and send them to the HTTP sink, which takes only the
tokens the simulator says are valid. Time is a shared fake clock: the token
source's and the simulator's."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from daemon.channels.base import Envelope, Verdict
from daemon.channels.http.channel import HttpChannel
from daemon.channels.http.settings import HttpSettings
from daemon.config.database import DatabaseSettings
from daemon.jobs import status_check
from daemon.jobs.kind import JobFailed
from daemon.sim.http import Faults, HttpSink
from daemon.sim.oauth import TokenServer
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.models import MODELS
from tests.integration.test_jobs import Clock, context, sent, statuses

pytestmark = pytest.mark.timeout(60)

CLIENT, SECRET = "outboxd-client", "s3cret-of-the-client"


@pytest.fixture
async def astore(db_url: str) -> AsyncIterator[AsyncStore]:
    store = open_async_store(DatabaseSettings(url=db_url), in_process=False)
    with store._store.db.bind_ctx(MODELS):  # the model declarations, for the test's queries
        yield store
    await store.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tokens(clock: Clock) -> AsyncIterator[TokenServer]:
    async with TokenServer({CLIENT: SECRET}, lifetime=100, clock=clock) as server:
        yield server


@pytest.fixture
async def sink(tokens: TokenServer) -> AsyncIterator[HttpSink]:
    async with HttpSink(Faults(bearer_valid=tokens.issuer.valid)) as s:
        yield s


@pytest.fixture
async def make_channel(
    tokens: TokenServer, sink: HttpSink, clock: Clock
) -> AsyncIterator[Callable[..., HttpChannel]]:
    made: list[HttpChannel] = []

    def make(**auth: Any) -> HttpChannel:
        settings = HttpSettings.model_validate(
            {
                "kind": "http",
                "url": sink.url("/in"),
                "auth": {
                    "type": "oauth2",
                    "token_url": tokens.url() + "?grant_type=client_credentials",
                    "client_id": CLIENT,
                    "client_secret": SECRET,
                    "refresh_before": 10,
                    **auth,
                },
            }
        )
        channel = HttpChannel(settings)
        assert channel.tokens is not None
        channel.tokens.clock = clock
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


def envelope(n: int = 1) -> Envelope:
    return Envelope(n, f"k{n}", "json", b'{"n": %d}' % n, 1)


async def test_one_token_serves_many_sends_from_many_senders(tokens, sink, make_channel):
    channel = make_channel()
    results: Counter[str] = Counter()
    channel.count_tokens(lambda result: results.update([result]))
    senders = [channel.sender() for _ in range(4)]
    outcomes = await asyncio.gather(*(senders[i % 4].send(envelope(i)) for i in range(40)))
    assert {o.verdict for o in outcomes} == {Verdict.DELIVERED}
    assert tokens.issuer.fetches == 1 and tokens.issuer.requests == 1
    assert results == {"ok": 1}
    [token] = tokens.issuer.issued()
    assert {r.headers["Authorization"] for r in sink.requests} == {f"Bearer {token}"}


@pytest.mark.parametrize("client_auth", ["basic", "body"])
async def test_either_client_authentication_gets_a_token(tokens, make_channel, client_auth):
    channel = make_channel(client_auth=client_auth)
    assert (await channel.sender().send(envelope())).verdict is Verdict.DELIVERED
    assert tokens.issuer.fetches == 1


async def test_a_token_is_replaced_ahead_of_its_expiry(tokens, sink, make_channel, clock):
    channel = make_channel()
    sender = channel.sender()
    assert (await sender.send(envelope(1))).verdict is Verdict.DELIVERED
    [first] = tokens.issuer.issued()
    clock.now += 95  # 5 s left of 100: inside refresh_before (10 s)
    assert (await sender.send(envelope(2))).verdict is Verdict.DELIVERED  # the old one, still good
    deadline = asyncio.get_running_loop().time() + 10
    while tokens.issuer.fetches < 2:  # fetched beside the send
        assert asyncio.get_running_loop().time() < deadline, "no refresh"
        await asyncio.sleep(0.01)
    clock.now += 10  # the first has expired at the partner
    assert not tokens.issuer.valid(first)
    assert (await sender.send(envelope(3))).verdict is Verdict.DELIVERED
    assert tokens.issuer.fetches == 2
    assert sink.requests[-1].headers["Authorization"] != f"Bearer {first}"
    assert len(sink.requests) == 3  # no request was turned away


async def test_a_401_mid_run_fetches_a_fresh_token_once_and_sends_again(tokens, sink, make_channel):
    channel = make_channel()
    sender = channel.sender()
    assert (await sender.send(envelope(1))).verdict is Verdict.DELIVERED
    tokens.issuer.expire_all()  # the partner forgets the token before it said it would
    outcomes = await asyncio.gather(*(sender.send(envelope(n)) for n in range(2, 6)))
    assert {o.verdict for o in outcomes} == {Verdict.DELIVERED}
    assert tokens.issuer.fetches == 2  # one fresh token for every sender that got a 401
    assert len({r.headers["Authorization"] for r in sink.requests}) == 2


async def test_a_401_to_a_fresh_token_too_holds_the_message(tokens, sink, make_channel):
    channel = make_channel()
    sink.faults.bearer_valid = lambda token: False  # the client has no rights there
    outcome = await channel.sender().send(envelope())
    assert outcome.verdict is Verdict.RETRY and outcome.unsent and outcome.transport_error
    assert "HTTP 401 to a freshly fetched access token" in outcome.detail
    assert tokens.issuer.fetches == 2 and len(sink.requests) == 2


async def test_token_endpoint_down_holds_sends_then_they_go(tokens, sink, make_channel, clock):
    channel = make_channel()
    results: Counter[str] = Counter()
    channel.count_tokens(lambda result: results.update([result]))
    sender = channel.sender()
    tokens.issuer.faults.status = 503
    first = await sender.send(envelope(1))
    assert first.verdict is Verdict.RETRY and first.unsent and first.transport_error
    assert "no access token: the token endpoint answered HTTP 503" in first.detail
    assert first.retry_after == pytest.approx(1.0)
    # within the backoff, no new request: the senders are answered at once
    second = await sender.send(envelope(2))
    assert second.unsent and "next try in" in second.detail
    assert tokens.issuer.requests == 1
    clock.now += 1.5
    await sender.send(envelope(3))  # tried again, still down: the wait doubles
    assert tokens.issuer.requests == 2
    tokens.issuer.faults.status = None  # back
    clock.now += 1.0
    assert (await sender.send(envelope(3))).unsent  # 2 s not over yet
    clock.now += 1.5
    assert (await sender.send(envelope(3))).verdict is Verdict.DELIVERED
    assert results == {"failed": 2, "ok": 1}
    assert len(sink.requests) == 1


async def test_an_unreachable_or_refusing_token_endpoint_is_counted_apart(
    tokens, sink, make_channel, clock
):
    channel = make_channel(client_secret="not-the-secret")
    results: Counter[str] = Counter()
    channel.count_tokens(lambda result: results.update([result]))
    outcome = await channel.sender().send(envelope())
    assert outcome.unsent and "refused the client: HTTP 401 invalid_client" in outcome.detail
    assert "not-the-secret" not in outcome.detail
    port = tokens.port
    await tokens.stop()
    clock.now += 10
    outcome = await channel.sender().send(envelope())
    assert outcome.unsent and f"the token endpoint http://127.0.0.1:{port}" in outcome.detail
    assert results == {"refused": 1, "failed": 1}
    assert sink.requests == []


async def test_a_token_without_expires_in_lives_the_assumed_lifetime(tokens, make_channel, clock):
    tokens.issuer.faults.omit_expires_in = True
    tokens.issuer.lifetime = 10_000
    channel = make_channel(assumed_lifetime=30, refresh_before=5)
    sender = channel.sender()
    await sender.send(envelope(1))
    clock.now += 31
    assert (await sender.send(envelope(2))).verdict is Verdict.DELIVERED
    assert tokens.issuer.fetches == 2


async def test_the_rfc_style_answer_and_any_case_of_bearer(tokens, make_channel):
    tokens.issuer.style = "rfc"
    tokens.issuer.faults.token_type = "bEaReR"
    channel = make_channel(scope="hook.write")
    assert (await channel.sender().send(envelope())).verdict is Verdict.DELIVERED


# --- the status check job ----------------------------------------------------------------


async def test_a_status_check_uses_one_token_across_runs_and_recovers_from_a_401(
    astore, tokens, clock
):
    counted: list[tuple[str, str]] = []
    async with HttpSink(
        Faults(bearer_valid=tokens.issuer.valid), status_stage=10, clock=clock
    ) as partner:
        now = datetime.now(UTC)
        keys = [f"F-{i}" for i in range(3)]
        # the partner knows the submissions (sent without a token by the helper)
        partner.faults.bearer_valid = None
        await sent(astore, partner, keys, now)
        partner.faults.bearer_valid = tokens.issuer.valid
        options = status_check.StatusCheckOptions(
            channel="filings",
            url=partner.url("/status/{key}"),
            statuses={"ACCEPTED": "confirmed", "REJECTED": "rejected"},
            every=0.001,
            auth={
                "type": "oauth2",
                "token_url": tokens.url(),
                "client_id": CLIENT,
                "client_secret": SECRET,
            },
        )
        ctx = context(astore, now)
        ctx.count_token = lambda channel, result: counted.append((channel, result))
        first = await status_check.run(ctx, options)
        assert first["checked"] == 3 and first["unanswered"] == 0
        tokens.issuer.expire_all()
        clock.now += 25
        second = await status_check.run(ctx, options)
        deadline = asyncio.get_running_loop().time() + 10
        while second["checked"] == 0:  # within `every` of the first run: not due yet
            assert asyncio.get_running_loop().time() < deadline
            second = await status_check.run(ctx, options)
        assert second["checked"] == 3 and second["confirmed"] + second["rejected"] == 3
        assert set(statuses().values()) <= {"confirmed", "rejected"}
        assert tokens.issuer.fetches == 2  # the first run's token served the second's start
        assert counted == [("filings", "ok"), ("filings", "ok")]
        checks = [r for r in partner.requests if r.path.startswith("/status/")]
        assert len(checks) == 3 + 3 + 3  # the second run: three 401s, then the fresh token
        assert len({r.headers["Authorization"] for r in checks}) == 2


async def test_a_status_check_without_a_token_is_a_failed_run(astore, tokens):
    tokens.issuer.faults.status = 503
    async with HttpSink() as partner:
        now = datetime.now(UTC)
        await sent(astore, partner, ["G-1"], now)
        options = status_check.StatusCheckOptions(
            channel="filings",
            url=partner.url("/status/{key}"),
            statuses={"ACCEPTED": "confirmed"},
            every=0.001,
            auth={
                "type": "oauth2",
                "token_url": tokens.url(),
                "client_id": CLIENT,
                "client_secret": SECRET,
            },
        )
        with pytest.raises(JobFailed, match="no access token"):
            await status_check.run(context(astore, now), options)
        assert statuses() == {"G-1": "sent"}
