"""A claimed message carries its prerequisite's stored response (what a reference
such as ``{{after.id}}`` in its payload is filled from), on SQLite and PostgreSQL,
on a thread and across the store's worker process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import Delivered, Failed, NewMessage
from daemon.store.aio import open_async_store
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
ANSWER = '{"resourceType": "Encounter", "id": "8a1e", "meta": {"versionId": "1"}}'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def msg(key: str, **kw) -> NewMessage:
    return NewMessage("satusehat", key, b'{"r": "Encounter/{{after.id}}"}', "create", **kw)


def test_a_claim_hands_each_message_its_prerequisites_response(store: Store):
    first = store.enqueue(msg("encounter"), now=T0)
    second = store.enqueue(msg("condition", after_key="encounter"), now=T0)
    alone = store.enqueue(msg("observation"), now=T0)
    claimed = store.claim(["satusehat"], "w", 10, 60, now=T0)
    assert {m.id: m.after_response for m in claimed} == {first.id: None, alone.id: None}
    store.record("w", [Delivered(first.id, ANSWER), Delivered(alone.id, "x")], now=T0)
    [dependant] = store.claim(["satusehat"], "w", 10, 60, now=at(1))
    assert (dependant.id, dependant.after_id, dependant.after_response) == (
        second.id,
        first.id,
        ANSWER,
    )


def test_a_prerequisite_that_failed_keeps_its_dependant_waiting(store: Store):
    first = store.enqueue(msg("search"), now=T0)
    store.enqueue(msg("encounter", after_key="search"), now=T0)
    store.claim(["satusehat"], "w", 10, 60, now=T0)
    store.record("w", [Failed(first.id, "no Patient matches identifier=…")], now=T0)
    assert store.claim(["satusehat"], "w", 10, 60, now=at(1)) == []


async def test_the_response_crosses_to_the_worker_process(db_url: str):
    store = open_async_store(DatabaseSettings(url=db_url), in_process=True)
    try:
        first = await store.enqueue(msg("encounter"), now=T0)
        await store.enqueue(msg("condition", after_key="encounter"), now=T0)
        await store.claim(["satusehat"], "w", 10, 60, now=T0)
        await store.record("w", [Delivered(first.id, ANSWER)], now=T0)
        [dependant] = await store.claim(["satusehat"], "w", 10, 60, now=at(1))
        assert dependant.after_response == ANSWER
    finally:
        await store.aclose()
