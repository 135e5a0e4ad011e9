"""A partner that answers with a NUL, over a real socket, on SQLite and
PostgreSQL: the answer is kept the same on both (the NUL as U+FFFD, by
``daemon.domain.limits.storable``), the message is recorded once and not sent
again; an attempt's error and a job's error likewise. On PostgreSQL the record
used to fail, the lease ran out and the message went to the partner again, for
ever."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from daemon.channels.base import Envelope, Verdict
from daemon.channels.http.channel import HttpChannel
from daemon.channels.http.settings import HttpSettings
from daemon.config.database import DatabaseSettings
from daemon.domain.messages import Delivered, Failed, NewMessage
from daemon.sim.http import Faults, HttpSink
from daemon.store.aio import AsyncStore, open_async_store

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def astore(db_url: str) -> AsyncIterator[AsyncStore]:
    store = open_async_store(DatabaseSettings(url=db_url), in_process=False)
    yield store
    await store.aclose()


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as s:
        yield s


async def _answer(sink: HttpSink, status: int, body: bytes):
    sink.faults = Faults(status=status, body=body, headers={"Content-Type": "text/plain"})
    channel = HttpChannel(HttpSettings.model_validate({"kind": "http", "url": sink.url("/x")}))
    envelope = Envelope(id=1, key="k", kind="json", payload=b"{}", attempt=1)
    try:
        return await channel.sender().send(envelope)
    finally:
        await channel.close()


async def test_an_answer_with_a_nul_is_kept_alike_and_the_message_sent_once(astore, sink):
    outcome = await _answer(sink, 200, b"accepted\x00id=7")
    assert outcome.verdict is Verdict.DELIVERED and outcome.response == "accepted\x00id=7"
    [stored] = await astore.enqueue_many([NewMessage("hook", "k", b"{}")], actor="test")
    [claimed] = await astore.claim(["hook"], "w", 10, 60)
    recorded = await astore.record("w", [Delivered(claimed.id, outcome.response)])
    assert recorded.recorded == {claimed.id: "sent"}
    timeline = await astore.message_timeline(stored.id)
    assert timeline is not None and timeline.response == "accepted\ufffdid=7"
    assert timeline.status == "sent"
    assert await astore.claim(["hook"], "w2", 10, 60) == []  # nothing to send again


async def test_a_refusal_with_a_nul_is_kept_alike(astore, sink):
    outcome = await _answer(sink, 422, b"bad\x00field")
    assert outcome.verdict is Verdict.REJECTED
    [stored] = await astore.enqueue_many([NewMessage("hook", "k", b"{}")], actor="test")
    [claimed] = await astore.claim(["hook"], "w", 10, 60)
    await astore.record("w", [Failed(claimed.id, outcome.detail, outcome.response)])
    timeline = await astore.message_timeline(stored.id)
    assert timeline is not None and timeline.status == "failed"
    assert timeline.response == "bad\ufffdfield" and "\x00" not in (timeline.last_error or "")


async def test_a_jobs_error_with_a_nul_is_kept_alike(astore):
    """A job's error may quote a partner's answer (the http job, a status check)."""
    definition = {"every": "1h", "job": "http", "options": {"url": "http://127.0.0.1:9/x"}}
    row = await astore.put_schedule("probe", definition, "test", create=True)
    [run_id] = await astore.queue_runs(row.id, [datetime.now(UTC)], "manual")
    [started] = await astore.start_queued("w", 60, set(), [row.id])
    assert started.id == run_id
    assert await astore.finish_run(run_id, "w", "failed", error="HTTP 500: no\x00pe")
    [run] = await astore.runs("probe", limit=1)
    assert run.status == "failed" and run.error == "HTTP 500: no\ufffdpe"
