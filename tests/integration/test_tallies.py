"""The counts the schema's triggers keep (``outboxd_tally``, ``outboxd_minute_tally``):
after every kind of change, on SQLite and PostgreSQL, they equal what counting the
table finds; folding keeps them equal; a database migrated with messages in it
starts with the right counts; two writers at once neither lose a change nor wait
for each other."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import peewee as pw
import pytest

from daemon.config.database import DatabaseSettings
from daemon.domain.messages import Delivered, Failed, NewMessage, RetryAt
from daemon.domain.selection import MessageFilter
from daemon.store.db import open_database
from daemon.store.migrations import MIGRATIONS, VERSION_TABLE, _ensure_version_table, migrate
from daemon.store.models import MODELS, Message, MinuteTally, StatusEvent, Tally, db_timestamp
from daemon.store.sync import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def msg(key: str, channel: str = "hie") -> NewMessage:
    return NewMessage(channel=channel, key=key, payload=f"payload {key}".encode())


def counted() -> dict[tuple[str, str], int]:
    rows = (
        Message.select(Message.channel, Message.status, pw.fn.COUNT(Message.id))
        .group_by(Message.channel, Message.status)
        .tuples()
    )
    return {(c, s): n for c, s, n in rows}


def finished_per_minute() -> dict[tuple[str, datetime, str], int]:
    """From the status events: what became sent or failed in each minute."""
    out: dict[tuple[str, datetime, str], int] = {}
    events = (
        StatusEvent.select(StatusEvent, Message.channel)
        .join(Message)
        .where(StatusEvent.to_status.in_(("sent", "failed")))
    )
    for e in events:
        key = (e.message.channel, e.at.replace(second=0, microsecond=0), e.to_status)
        out[key] = out.get(key, 0) + 1
    return out


def test_every_kind_of_change_is_counted(store: Store):
    created = store.enqueue_many([msg(f"h{i}") for i in range(30)], now=at(0))
    store.enqueue_many([msg(f"h{i}") for i in range(10)], now=at(1))  # already there
    store.enqueue_many([msg(f"w{i}", "webhook") for i in range(5)], now=at(1))
    assert store.tally_counts() == counted() == {("hie", "pending"): 30, ("webhook", "pending"): 5}

    claimed = store.claim(["hie"], "d1", 20, 60, now=at(2))
    ids = [c.id for c in claimed]
    assert store.tally_counts() == counted()
    store.record(
        "d1",
        [Delivered(i) for i in ids[:10]]
        + [Failed(i, "AE") for i in ids[10:14]]
        + [RetryAt(i, at(100), "later") for i in ids[14:17]],
        now=at(70),
    )  # the last three of the twenty stay leased
    assert store.tally_counts() == counted()
    assert counted()[("hie", "sent")] == 10 and counted()[("hie", "sending")] == 3

    store.expire_leases(now=at(200))
    store.retry(MessageFilter(ids=tuple(ids[10:12])), now=at(201))
    store.cancel(MessageFilter(ids=tuple(ids[12:14])), now=at(202))
    store.resend(MessageFilter(ids=tuple(ids[:2])), now=at(203))
    store.cancel(MessageFilter(channel="webhook", statuses=("pending",)), now=at(204))
    assert store.tally_counts() == counted()
    assert counted()[("webhook", "cancelled")] == 5

    again = store.claim(["hie"], "d2", 100, 60, now=at(300))
    store.record("d2", [Delivered(c.id) for c in again], now=at(301))
    assert (
        store.tally_counts()
        == counted()
        == {
            ("hie", "sent"): 28,
            ("hie", "cancelled"): 2,
            ("webhook", "cancelled"): 5,
        }
    )
    minutes = store.unit.read(lambda: store.tallies.minutes(T0))
    assert minutes == finished_per_minute()
    assert sum(minutes.values()) == 10 + 4 + 2 + 18  # resent ones count again
    assert store.purge_messages(before=at(10_000)) == 35  # the sent and the cancelled
    assert store.tally_counts() == counted()
    assert len(created) == 30
    # the minutes are a history: purging what ended leaves them
    assert store.unit.read(lambda: store.tallies.minutes(T0)) == minutes


def test_minutes_count_what_became_sent_or_failed(store: Store):
    store.enqueue_many([msg(f"m{i}") for i in range(12)], now=at(0))
    first = store.claim(["hie"], "d", 6, 600, now=at(5))
    store.record(
        "d", [Delivered(c.id) for c in first[:4]] + [Failed(first[4].id, "AR")], now=at(10)
    )
    second = store.claim(["hie"], "d", 6, 600, now=at(65))
    store.record("d", [Delivered(c.id) for c in second], now=at(70))
    store.record("d", [Delivered(first[5].id)], now=at(130))
    minutes = store.unit.read(lambda: store.tallies.minutes(T0))
    assert minutes == {
        ("hie", T0, "sent"): 4,
        ("hie", T0, "failed"): 1,
        ("hie", at(60), "sent"): 6,
        ("hie", at(120), "sent"): 1,
    }
    assert minutes == finished_per_minute()
    series = store.per_minute(3, now=at(150))
    assert [(m.start, m.sent, m.failed) for m in series] == [
        (T0, 4, 1),
        (at(60), 6, 0),
        (at(120), 1, 0),
    ]
    # the window counts whole minutes: the current one and those before it
    (hie,) = store.stats(now=at(150), window=120)
    assert (hie.sent_in_window, hie.failed_in_window) == (7, 0)
    (hie,) = store.stats(now=at(150), window=121)
    assert (hie.sent_in_window, hie.failed_in_window) == (11, 1)


def test_due_is_the_pending_less_those_waiting(store: Store):
    store.enqueue_many([msg(f"d{i}") for i in range(5)], now=at(0))
    store.enqueue(NewMessage("hie", "later", b"x", not_before=at(1000)), now=at(0))
    (hie,) = store.stats(now=at(10))
    assert (hie.counts, hie.due) == ({"pending": 6}, 5)
    (hie,) = store.stats(now=at(1000))
    assert hie.due == 6


def test_fold_keeps_the_counts_and_drops_old_minutes(store: Store):
    for i in range(40):  # a statement each: on PostgreSQL a row or more each
        store.enqueue(msg(f"f{i}"), now=at(i))
    for i in range(20):
        (c,) = store.claim(["hie"], "d", 1, 60, now=at(100 + i))
        store.record("d", [Delivered(c.id) if i % 4 else Failed(c.id, "AE")], now=at(100 + i))
    before = store.tally_counts()
    minutes = store.unit.read(lambda: store.tallies.minutes(T0))
    assert before == counted()
    rows = Tally.select().count()
    removed = store.fold_tallies(now=at(200), at_least=0)
    assert store.tally_counts() == before == counted()
    assert store.unit.read(lambda: store.tallies.minutes(T0)) == minutes
    assert Tally.select().count() == 3  # pending, sent, failed: one row each
    assert MinuteTally.select().count() == 2  # the minute from 100 s: sent, failed
    if store.postgres:  # a row or more per statement, summed
        assert removed == rows - 3 + 20 - 2 and rows > 40
    else:  # a row per key already: only sending's, at 0, goes
        assert removed == 1 and rows == 4
    # a week and a day later, those minutes are past any window
    assert store.fold_tallies(now=at(200) + timedelta(days=8, minutes=5), at_least=0) >= 1
    assert MinuteTally.select().count() == 0
    assert store.tally_counts() == counted()


def test_no_fold_below_the_threshold(store: Store):
    store.enqueue(msg("one"), now=at(0))
    store.enqueue(msg("two"), now=at(1))
    rows = Tally.select().count()
    assert store.fold_tallies(now=at(2)) == 0
    assert Tally.select().count() == rows


def test_a_database_migrated_with_messages_in_it_starts_counted(empty_url: str):
    db = open_database(DatabaseSettings(url=empty_url))
    migrate_to(db, 4)
    now = db_timestamp(datetime.now(UTC) - timedelta(minutes=3))
    old = db_timestamp(datetime.now(UTC) - timedelta(days=9))
    statuses = ["pending"] * 3 + ["sent"] * 4 + ["failed"] * 2
    for i, status in enumerate(statuses):
        db.execute_sql(
            'INSERT INTO outboxd_message (channel, kind, "key", payload, status, attempts,'
            " next_attempt_at, created_at, updated_at) VALUES"
            f" ({db.param}, 'hl7', {db.param}, {db.param}, {db.param}, 0, {db.param},"
            f" {db.param}, {db.param})",
            ("hie" if i % 2 else "lab", f"k{i}", b"x", status, now, now, now),
        )
        if status != "pending":
            for when in (now, old):  # a week and more ago: past every window
                db.execute_sql(
                    "INSERT INTO outboxd_status_event (message_id, from_status, to_status,"
                    f" actor, at) VALUES ({db.param}, 'sending', {db.param}, 'd', {db.param})",
                    (i + 1, status, when),
                )
    migrate(db)
    db.close()
    store = Store(open_database(DatabaseSettings(url=empty_url)))
    try:
        with store.db.bind_ctx(MODELS):
            assert store.tally_counts() == counted()
        assert sum(store.tally_counts().values()) == 9
        since = datetime.now(UTC) - timedelta(days=30)
        minutes = store.unit.read(lambda: store.tallies.minutes(since))
        assert sum(minutes.values()) == 6
        assert {status for (_c, _m, status) in minutes} == {"sent", "failed"}
    finally:
        store.close()


def migrate_to(db: pw.Database, version: int) -> None:
    """Apply the migrations up to ``version`` only: a database an older outboxd made."""
    _ensure_version_table(db)
    for migration in MIGRATIONS[:version]:
        with db.atomic():
            migration.apply(db)
            db.execute_sql(
                f"INSERT INTO {VERSION_TABLE} VALUES ({db.param}, {db.param}, {db.param})",
                (migration.version, migration.description, db_timestamp(datetime.now(UTC))),
            )


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite: one writer at a time
def test_writers_at_once_lose_nothing(store: Store):
    store.enqueue_many([msg(f"c{i}") for i in range(400)], now=at(0))
    errors: list[BaseException] = []

    def deliver(owner: str) -> None:  # each thread has a connection of its own
        try:
            while claimed := store.claim(["hie"], owner, 10, 60, now=at(1)):
                store.record(
                    owner,
                    [Delivered(c.id) if c.id % 3 else Failed(c.id, "AE") for c in claimed],
                    now=at(2),
                )
                store.fold_tallies(now=at(2), at_least=0)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(f"d{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert store.tally_counts() == counted()
    assert sum(n for (_c, s), n in counted().items() if s in ("sent", "failed")) == 400
    minutes = store.unit.read(lambda: store.tallies.minutes(T0))
    assert sum(minutes.values()) == 400


def test_an_operator_filter_by_channel_counts_from_the_tallies_as_the_table_would(store: Store):
    store.enqueue_many([msg(f"o{i}") for i in range(6)] + [msg("w", "webhook")], now=at(0))
    claimed = store.claim(["hie", "webhook"], "d", 10, 60, now=at(1))
    hie = [c.id for c in claimed if c.channel == "hie"]
    hook = [c.id for c in claimed if c.channel == "webhook"]
    store.record(
        "d",
        [Failed(i, "AE") for i in hie[:3] + hook] + [Delivered(hie[3])]
        + [RetryAt(i, at(2), "later") for i in hie[4:]],
        now=at(2),
    )  # fmt: skip
    by_channel = MessageFilter(channel="hie", statuses=("failed",))
    counted = MessageFilter(channel="hie", statuses=("failed",), since=T0 - timedelta(days=1))
    tallied = store.retry(by_channel, dry_run=True, now=at(3))
    scanned = store.retry(counted, dry_run=True, now=at(3))
    assert (tallied.matched, tallied.skipped) == (scanned.matched, scanned.skipped)
    assert (tallied.matched, tallied.skipped) == (3, {"pending": 2, "sent": 1})
    everywhere = store.retry(MessageFilter(statuses=("failed",)), dry_run=True, now=at(3))
    assert everywhere.matched == 4
    done = store.retry(by_channel, now=at(4), bound=2)  # over the bound: a bulk operation
    assert done.operation is not None and done.matched == 3
