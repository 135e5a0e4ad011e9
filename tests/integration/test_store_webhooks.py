"""Partners' status callbacks in the store (``Store.receive_webhook``), on SQLite
and on PostgreSQL alike: the receipt, the message found by key or by the
partner's id, its move with a status event, all in one transaction; a repeat
answered the same and changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.domain.messages import Delivered, NewMessage
from daemon.domain.webhooks import WebhookCall
from daemon.store.models import Message, StatusEvent, WebhookReceipt
from daemon.store.sync import Store
from daemon.store.webhooks import BODY_KEPT
from tests.support.waiting import wait_until

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"submission": "S-1", "status": "ACCEPTED"}'


def sent(store: Store, key: str, response: str | None = None, channel: str = "filings") -> int:
    """A message of the channel, claimed and delivered (``sent``), with the partner's answer."""
    store.enqueue(NewMessage(channel, key, b"{}"), actor="test", now=T0)
    [claimed] = [c for c in store.claim([channel], "w", 100, 60, now=T0) if c.key == key]
    store.record("w", [Delivered(claimed.id, response)], now=T0)
    return claimed.id


def call(webhook_id: str = "msg_1", **changes) -> WebhookCall:
    fields = {
        "webhook": "filer",
        "webhook_id": webhook_id,
        "channel": "filings",
        "body": BODY,
        "partner_status": "ACCEPTED",
        "outcome": "confirmed",
        "message_key": "k1",
    }
    return WebhookCall(**{**fields, **changes})


def history(message_id: int) -> list[tuple[str | None, str, str]]:
    events = StatusEvent.select().where(StatusEvent.message == message_id).order_by(StatusEvent.id)
    return [(e.from_status, e.to_status, e.actor) for e in events]


def test_a_mapped_status_confirms_the_message_with_its_event_and_receipt(store: Store):
    message = sent(store, "k1")
    outcome = store.receive_webhook(call(), now=T0 + timedelta(minutes=1))
    assert (outcome.result, outcome.http_status, outcome.replay) == ("applied", 200, False)
    assert outcome.message_id == message
    assert outcome.answer == {"result": "applied", "message": message, "status": "confirmed"}
    assert Message.get_by_id(message).status == "confirmed"
    assert history(message)[-1] == ("sent", "confirmed", "webhook:filer")
    event = StatusEvent.select().where(StatusEvent.message == message).order_by(StatusEvent.id)
    details = list(event)[-1].details
    assert details == {"partner_status": "ACCEPTED", "webhook": "filer", "webhook_id": "msg_1"}
    [receipt] = store.webhook_receipts()
    assert (receipt.webhook, receipt.webhook_id, receipt.result) == ("filer", "msg_1", "applied")
    assert (receipt.message_id, receipt.partner_status) == (message, "ACCEPTED")
    assert (receipt.answer_status, receipt.answer) == (200, outcome.answer)
    assert (receipt.body, receipt.body_size) == (BODY.decode(), len(BODY))
    assert receipt.received_at == T0 + timedelta(minutes=1)


def test_a_rejection(store: Store):
    message = sent(store, "k1")
    outcome = store.receive_webhook(call(partner_status="REFUSED", outcome="rejected"))
    assert outcome.result == "applied"
    assert Message.get_by_id(message).status == "rejected"
    assert history(message)[-1] == ("sent", "rejected", "webhook:filer")


def test_a_repeat_answers_the_same_and_changes_nothing(store: Store):
    message = sent(store, "k1")
    first = store.receive_webhook(call())
    events = history(message)
    # the same webhook-id again, even saying something else: the first answer
    again = store.receive_webhook(call(partner_status="REFUSED", outcome="rejected"))
    assert again.replay and not first.replay
    assert (again.receipt_id, again.result, again.http_status, again.answer) == (
        first.receipt_id,
        first.result,
        first.http_status,
        first.answer,
    )
    assert Message.get_by_id(message).status == "confirmed"
    assert history(message) == events
    assert WebhookReceipt.select().count() == 1


def test_the_same_webhook_id_of_another_webhook_is_another_receipt(store: Store):
    sent(store, "k1")
    store.receive_webhook(call())
    other = store.receive_webhook(call(webhook="other"))
    assert not other.replay and other.result == "unchanged"
    assert WebhookReceipt.select().count() == 2


def test_an_unknown_message_is_kept_for_the_operator(store: Store):
    sent(store, "k1")
    outcome = store.receive_webhook(call(message_key="nope"))
    assert (outcome.result, outcome.http_status, outcome.message_id) == (
        "unknown_message",
        404,
        None,
    )
    [receipt] = store.webhook_receipts(result="unknown_message")
    assert receipt.body == BODY.decode() and receipt.message_id is None
    # a message of another channel with that key is not the one
    sent(store, "elsewhere", channel="hie")
    assert store.receive_webhook(call("msg_2", message_key="elsewhere")).result == (
        "unknown_message"
    )


def test_an_unmapped_status_is_recorded_and_changes_nothing(store: Store):
    message = sent(store, "k1")
    events = history(message)
    outcome = store.receive_webhook(call(partner_status="IN_REVIEW", outcome=None))
    assert (outcome.result, outcome.http_status) == ("unmapped_status", 202)
    assert outcome.message_id == message
    assert Message.get_by_id(message).status == "sent"
    # in the timeline as a status on the way (sent to sent), the message unmoved
    assert history(message) == [*events, ("sent", "sent", "webhook:filer")]
    [receipt] = store.webhook_receipts()
    assert (receipt.partner_status, receipt.result) == ("IN_REVIEW", "unmapped_status")


def test_a_message_already_confirmed_is_unchanged(store: Store):
    message = sent(store, "k1")
    store.receive_webhook(call("msg_1"))
    events = history(message)
    outcome = store.receive_webhook(call("msg_2", partner_status="REFUSED", outcome="rejected"))
    assert (outcome.result, outcome.http_status) == ("unchanged", 202)
    assert outcome.answer == {"result": "unchanged", "message": message, "status": "confirmed"}
    assert Message.get_by_id(message).status == "confirmed"
    assert history(message) == events


def test_a_message_not_sent_yet_is_unchanged(store: Store):
    store.enqueue(NewMessage("filings", "k1", b"{}"), actor="test", now=T0)
    outcome = store.receive_webhook(call())
    assert outcome.result == "unchanged" and outcome.answer["status"] == "pending"


def test_an_unreadable_body_is_kept_with_its_problem(store: Store):
    outcome = store.receive_webhook(
        call(body=b"\x00not json\xff", message_key=None, problem="the body is not JSON")
    )
    assert (outcome.result, outcome.http_status) == ("unreadable", 400)
    assert outcome.answer == {"result": "unreadable", "error": "the body is not JSON"}
    [receipt] = store.webhook_receipts()
    assert receipt.body == "\ufffdnot json\ufffd"  # what a database keeps as text


def test_a_large_body_is_kept_in_part(store: Store):
    body = json.dumps({"status": "ACCEPTED", "pad": "x" * (2 * BODY_KEPT)}).encode()
    store.receive_webhook(call(body=body))
    [receipt] = store.webhook_receipts()
    assert len(receipt.body) == BODY_KEPT and receipt.body_size == len(body)


@pytest.mark.parametrize("webhook_id", ["", "x" * 256, "line\nbreak"])
def test_a_webhook_id_that_cannot_be_one(store: Store, webhook_id: str):
    with pytest.raises(ValueError, match="webhook-id"):
        store.receive_webhook(call(webhook_id))
    assert WebhookReceipt.select().count() == 0


# --- by the partner's id ------------------------------------------------------------------


def by_ref(ref: str, webhook_id: str = "msg_1", pointer: str = "/data/id") -> WebhookCall:
    return call(webhook_id, message_key=None, message_ref=ref, ref_pointer=pointer)


def test_found_by_the_id_the_partner_gave_when_it_was_sent(store: Store):
    sent(store, "k1", json.dumps({"data": {"id": "S-10"}}))
    wanted = sent(store, "k2", json.dumps({"data": {"id": "S-1"}}))  # S-1 is inside S-10 too
    sent(store, "k3", "not JSON, mentioning S-1")
    sent(store, "k4")  # no answer kept
    outcome = store.receive_webhook(by_ref("S-1"))
    assert (outcome.result, outcome.message_id) == ("applied", wanted)
    assert Message.get_by_id(wanted).status == "confirmed"


@pytest.mark.parametrize(
    ("kept", "ref"),
    [
        ({"data": {"id": 12345}}, "12345"),  # a number, named as text
        ({"data": {"id": 'a/b\\c"d'}}, 'a/b\\c"d'),  # what JSON escapes
        ({"data": {"id": "ünï"}}, "ünï"),  # escaped as \u00fc by one encoder, not another
        ({"data": {"id": "50%_off"}}, "50%_off"),  # LIKE's wildcards
    ],
)
def test_partner_ids_of_every_shape(store: Store, kept: dict, ref: str):
    sent(store, "decoy", json.dumps({"data": {"id": "other"}}))
    wanted = sent(store, "k1", json.dumps(kept))
    assert store.receive_webhook(by_ref(ref)).message_id == wanted
    sent(store, "k2", json.dumps(kept, ensure_ascii=False))
    assert store.receive_webhook(by_ref(ref, "msg_2")).result in ("applied", "unchanged")


def test_an_id_no_message_was_given_is_unknown(store: Store):
    sent(store, "k1", json.dumps({"data": {"id": "S-1"}}))
    assert store.receive_webhook(by_ref("S-2")).result == "unknown_message"
    assert store.receive_webhook(by_ref("S-1", "msg_2", pointer="/id")).result == (
        "unknown_message"
    )


def test_the_partners_id_among_many_answers(store: Store):
    messages = [NewMessage("filings", f"k{i}", b"{}") for i in range(1200)]
    store.enqueue_many(messages, actor="test", now=T0)  # more than a page of candidates
    claimed = store.claim(["filings"], "w", 2000, 60, now=T0)
    answers = [Delivered(c.id, json.dumps({"data": {"id": f"ID-{c.key}"}})) for c in claimed]
    store.record("w", answers, now=T0)
    first = min(c.id for c in claimed)
    outcome = store.receive_webhook(by_ref("ID-k0"))
    assert (outcome.result, outcome.message_id) == ("applied", first)


# --- one transaction -------------------------------------------------------------------------


def test_a_failure_leaves_nothing_behind(store: Store, monkeypatch: pytest.MonkeyPatch):
    message = sent(store, "k1")
    events = history(message)

    def broken(*args, **kwargs):
        raise RuntimeError("the event write failed")

    monkeypatch.setattr(store.unit, "events", broken)
    with pytest.raises(RuntimeError):
        store.receive_webhook(call())
    monkeypatch.undo()
    assert Message.get_by_id(message).status == "sent"
    assert history(message) == events
    assert WebhookReceipt.select().count() == 0
    assert store.receive_webhook(call()).result == "applied"  # the partner's retry


RECEIVER = """
import json, sys, time
from pathlib import Path
from daemon.config.database import DatabaseSettings
from daemon.domain.webhooks import WebhookCall
from daemon.store.db import open_database
from daemon.store.sync import Store
store = Store(open_database(DatabaseSettings(url=sys.argv[1])))
store.webhook_receipts(limit=1)  # connected
Path(sys.argv[3]).touch()  # ready: imported and connected
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
body = b'{"status": "ACCEPTED"}'
outcome = store.receive_webhook(
    WebhookCall("filer", "msg_1", "filings", body, "ACCEPTED", "confirmed", "k1")
)
print(json.dumps([outcome.result, outcome.http_status, outcome.replay]))
"""


@pytest.mark.slow
def test_the_same_callback_at_once_from_several_processes(
    store: Store, db_url: str, tmp_path: Path
):
    message = sent(store, "k1")
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(4)]
    receivers = [
        subprocess.Popen(
            [sys.executable, "-c", RECEIVER, db_url, str(go), str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for path in ready
    ]

    def all_ready() -> bool:
        for receiver in receivers:
            if receiver.poll() is not None:  # exited before it was ready: say why
                raise AssertionError(receiver.communicate()[1].decode())
        return all(path.exists() for path in ready)

    wait_until(all_ready, "every receiver imported and connected", timeout=60)
    go.touch()
    said = []
    for receiver in receivers:
        out, err = receiver.communicate(timeout=60)
        assert receiver.returncode == 0, err.decode()
        said.append(tuple(json.loads(out)))
    assert sorted(said) == [("applied", 200, False)] + [("applied", 200, True)] * 3
    assert [e[1] for e in history(message)].count("confirmed") == 1
    assert len(store.webhook_receipts()) == 1


def test_receipts_newest_first_per_webhook_and_limit(store: Store):
    sent(store, "k1")
    for i in range(5):
        store.receive_webhook(call(f"msg_{i}", webhook="filer" if i % 2 else "other"))
    assert [r.webhook_id for r in store.webhook_receipts(limit=3)] == ["msg_4", "msg_3", "msg_2"]
    assert [r.webhook_id for r in store.webhook_receipts("filer")] == ["msg_3", "msg_1"]
    with pytest.raises(ValueError, match="limit"):
        store.webhook_receipts(limit=0)


# --- the async store the roles use ------------------------------------------------------------


@pytest.mark.parametrize("in_process", [False, True], ids=["thread", "process"])
async def test_through_the_async_store(store: Store, db_url: str, in_process: bool):
    from daemon.config.database import DatabaseSettings
    from daemon.store.aio import open_async_store

    message = sent(store, "k1")
    astore = open_async_store(DatabaseSettings(url=db_url), in_process=in_process)
    try:
        outcome = await astore.receive_webhook(call())
        assert (outcome.result, outcome.message_id, outcome.replay) == ("applied", message, False)
        assert (await astore.receive_webhook(call())).replay
        [receipt] = await astore.webhook_receipts("filer", limit=10)
        assert (receipt.webhook_id, receipt.answer) == ("msg_1", outcome.answer)
    finally:
        await astore.aclose()
