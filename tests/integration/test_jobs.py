"""The job kinds run as the scheduler runs them (a ``JobContext``, the async store
on a real database, real HTTP peers on loopback): status checks against the HTTP
simulator, purge, export, http, report."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from daemon.config.database import DatabaseSettings
from daemon.config.loader import parse_config
from daemon.domain.messages import Delivered, Failed, NewMessage
from daemon.domain.selection import MessageFilter
from daemon.domain.tracking import CheckResult
from daemon.jobs import export, http, purge, report, status_check
from daemon.jobs.kind import JobContext, JobFailed
from daemon.sim.http import Faults, HttpSink
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.models import MODELS, Message, StatusCheck, StatusEvent

BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def astore(db_url: str) -> AsyncIterator[AsyncStore]:
    store = open_async_store(DatabaseSettings(url=db_url), in_process=False)
    with store._store.db.bind_ctx(MODELS):  # the model declarations, for the test's queries
        yield store
    await store.aclose()


def context(store: AsyncStore, fire: datetime, text: str = "", notify: Any = None) -> JobContext:
    settings = parse_config(f"database: sqlite:///unused.db\ntimezone: Asia/Jakarta\n{text}")

    async def no_notify(targets: list[str], subject: str, body: str) -> list[str]:
        return []

    return JobContext(
        "test", 1, fire, 1, BERLIN, settings.timezone, settings.sources, store, notify or no_notify
    )


async def sent(
    store: AsyncStore, sink: HttpSink | None, keys: list[str], at: datetime
) -> list[int]:
    """Messages of channel ``filings`` delivered (to the sink, which then knows them)."""
    messages = [NewMessage("filings", k, b'{"n": 1}', "json") for k in keys]
    ids = [r.id for r in await store.enqueue_many(messages, now=at)]
    claimed = await store.claim(["filings"], "w", 100, 60, now=at)
    if sink is not None:
        async with aiohttp.ClientSession() as session:
            for key in keys:
                await session.post(
                    sink.url("/submit"), data=b"{}", headers={"Idempotency-Key": key}
                )
    answers = [Delivered(m.id, json.dumps({"submission": {"id": f"P-{m.key}"}})) for m in claimed]
    await store.record("w", answers, now=at)
    return ids


def statuses() -> dict[str, str]:
    return {m.key: m.status for m in Message.select(Message.key, Message.status)}


def check_options(sink: HttpSink, **extra: Any) -> status_check.StatusCheckOptions:
    return status_check.StatusCheckOptions(
        channel="filings",
        url=sink.url("/status/{key}"),
        statuses={"ACCEPTED": "confirmed", "REJECTED": "rejected"},
        every=0.001,
        **extra,
    )


# --- status_check ------------------------------------------------------------------------


async def test_status_checks_move_sent_to_confirmed_and_rejected(astore):
    clock = Clock()
    async with HttpSink(status_stage=10, reject_every=2, clock=clock) as sink:
        now = datetime.now(UTC)
        keys = [f"F-{i}" for i in range(6)]
        await sent(astore, sink, keys, now)
        options = check_options(sink)
        first = await status_check.run(context(astore, now), options)
        assert first == {
            "checked": 6,
            "unanswered": 0,
            "confirmed": 0,
            "rejected": 0,
            "open": 6,
            "flagged": 0,
        }
        assert set(statuses().values()) == {"sent"}  # RECEIVED: still open
        clock.now += 25  # past RECEIVED and PROCESSING
        second = await status_check.run(context(astore, now), options)
        final = {k: sink.status_of(k) for k in keys}
        assert set(final.values()) == {"ACCEPTED", "REJECTED"}  # the test's keys end both ways
        expected = {k: "confirmed" if s == "ACCEPTED" else "rejected" for k, s in final.items()}
        assert statuses() == expected
        assert second["confirmed"] + second["rejected"] == 6
        events = [
            (e.from_status, e.to_status, e.details["partner_status"])
            for e in StatusEvent.select().where(
                StatusEvent.to_status.in_(["confirmed", "rejected"])
            )
        ]
        assert sorted(events) == sorted(("sent", expected[k], final[k]) for k in keys)
        # done: nothing is checked again
        assert await status_check.run(context(astore, now), options) == {"checked": 0}


async def test_a_message_still_open_after_max_checks_is_flagged(astore):
    async with HttpSink(status_stage=3600) as sink:
        now = datetime.now(UTC)
        await sent(astore, sink, ["F-1"], now)
        await sent(astore, None, ["F-unknown"], now)  # the partner never heard of it: 404
        options = check_options(sink, max_checks=2)
        await status_check.run(context(astore, now), options)
        result = await status_check.run(context(astore, now), options)
        assert result["flagged"] == 2
        assert await status_check.run(context(astore, now), options) == {"checked": 0}
        rows = {r.message_id: r for r in StatusCheck.select()}
        assert {r.checks for r in rows.values()} == {2} and all(r.flagged for r in rows.values())
        assert {r.answer for r in rows.values()} == {"RECEIVED", "UNKNOWN"}
        assert set(statuses().values()) == {"sent"}


async def test_a_partner_that_is_down_changes_nothing_and_the_run_fails(astore):
    async with HttpSink(Faults(status=503), status_stage=0) as sink:
        now = datetime.now(UTC)
        await sent(astore, sink, ["F-1", "F-2"], now)
        with pytest.raises(JobFailed, match="no check got an answer"):
            await status_check.run(context(astore, now), check_options(sink))
        assert StatusCheck.select().count() == 0  # the next run checks them as if new
        sink.faults.status = 200
        result = await status_check.run(context(astore, now), check_options(sink))
        assert result["confirmed"] + result["rejected"] == 2


async def test_the_partners_id_from_the_answer_kept_at_send(astore):
    async with HttpSink(status_stage=0) as sink:
        now = datetime.now(UTC)
        await sent(astore, None, ["F-1"], now)
        sink.submitted["P-F-1"] = sink.clock()  # the partner knows it by its own id
        options = check_options(sink, id_pointer="/submission/id")
        options = options.model_copy(update={"url": sink.url("/status/{id}")})
        result = await status_check.run(context(astore, now), options)
        assert result["checked"] == 1 and statuses()["F-1"] in ("confirmed", "rejected")
        assert sink.requests[-1].path == "/status/P-F-1"


# --- purge --------------------------------------------------------------------------------


async def test_purge_deletes_old_delivered_messages_only_in_batches(astore):
    old = datetime.now(UTC) - timedelta(days=40)
    await sent(astore, None, [f"old-{i}" for i in range(7)], old)
    pending = await astore.enqueue(NewMessage("filings", "pending-old", b"{}", "json"), now=old)
    await astore.enqueue(NewMessage("filings", "recent", b"{}", "json"))
    failed = (await astore.enqueue(NewMessage("other", "failed-old", b"{}", "json"), now=old)).id
    [claimed] = await astore.claim(["other"], "w", 1, 60, now=old)
    await astore.record("w", [Failed(claimed.id, "no")], now=old)
    result = await purge.run(context(astore, datetime.now(UTC)), purge.PurgeOptions(batch=3))
    assert result["messages"] == 7
    left = statuses()
    assert left == {"pending-old": "pending", "recent": "pending", "failed-old": "failed"}
    assert (
        StatusEvent.select()
        .where(
            StatusEvent.message.not_in(
                [pending.id, failed, Message.get(Message.key == "recent").id]
            )
        )
        .count()
        == 0
    )


async def delivered(store: AsyncStore, payloads: list[bytes], at: datetime) -> None:
    messages = [NewMessage("filings", f"k{i}", p, "json") for i, p in enumerate(payloads)]
    await store.enqueue_many(messages, now=at)
    while claimed := await store.claim(["filings"], "w", 100, 60, now=at):
        await store.record("w", [Delivered(m.id, "ok") for m in claimed], now=at)


def text_index_bytes() -> int:
    """What SQLite's FTS5 payload index holds, in bytes."""
    cursor = Message._meta.database.execute_sql(
        "SELECT coalesce(sum(length(block)), 0) FROM outboxd_message_text_data"
    )
    return int(cursor.fetchone()[0])


async def test_purge_merges_the_text_index_so_deleted_payloads_leave_it(astore, db_url):
    """SQLite's FTS5 keeps a deleted payload's entries until its segments merge: the
    purge merges them, so the index shrinks with the table (a steady purge otherwise
    grows the file while the rows do not: docs/soak.md). PostgreSQL's GIN index is
    vacuum's: nothing to merge."""
    old = datetime.now(UTC) - timedelta(days=40)
    payloads = [
        f'{{"note": "assessment {i:05d} of patient MRN{i:06d}"}}'.encode() for i in range(400)
    ]
    await delivered(astore, payloads, old)
    await astore.enqueue(NewMessage("filings", "live", b'{"note": "still waiting"}', "json"))
    sqlite = db_url.startswith("sqlite")
    options = purge.PurgeOptions(compact_search_index=False)
    result = await purge.run(context(astore, datetime.now(UTC)), options)
    assert result["messages"] == 400 and result["text_index_steps"] == 0
    if sqlite:
        kept = text_index_bytes()  # the deleted payloads' entries and their markers
        await delivered(astore, payloads, old)
        result = await purge.run(context(astore, datetime.now(UTC)), purge.PurgeOptions())
        assert result["messages"] == 400 and result["text_index_steps"] >= 1
        assert text_index_bytes() < kept / 4
    else:
        assert await astore.compact_text_index(500) == 0
    page = await astore.list_messages(MessageFilter(text="still waiting"))
    assert [m.key for m in page.items] == ["live"]  # the search still finds what is left


async def test_the_index_merge_stops_after_one_rewrite_while_new_segments_keep_coming():
    """On a busy system every merge step finds new segments: the purge stops once it
    has written about one copy of the index instead of chasing them for ever."""

    class Busy:
        steps = 0

        async def text_index_rows(self) -> int:
            return 1000

        async def compact_text_index(self, pages: int) -> int:
            self.steps += 1
            return 300  # always something left

    busy = Busy()
    assert await purge._compact(busy) == 5  # 5 x 300 >= 1.25 x 1000
    assert busy.steps == 5


async def test_purge_keeps_a_delivered_message_a_waiting_one_names_first(astore):
    old = datetime.now(UTC) - timedelta(days=40)
    [add] = await sent(astore, None, ["KB:add"], old)
    await astore.enqueue(NewMessage("filings", "KB:task:3", b"{}", "json", after_id=add), now=old)
    assert (await purge.run(context(astore, datetime.now(UTC)), purge.PurgeOptions()))[
        "messages"
    ] == 0
    assert statuses() == {"KB:add": "sent", "KB:task:3": "pending"}


async def test_purge_deletes_rejected_and_cancelled_messages_past_the_age(astore):
    """Messages that ended rejected or cancelled go as the delivered ones do, counted
    from when they ended; a recent one stays, and so does one a waiting message
    names first, and failed and pending ones."""
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    [rej_old, rej_recent, _] = await sent(astore, None, ["rej-old", "rej-recent", "sent-old"], old)
    await astore.record_status_checks(
        [CheckResult(rej_old, "rejected", "REJECTED")], 48, "t", now=old
    )
    await astore.record_status_checks(
        [CheckResult(rej_recent, "rejected", "REJECTED")], 48, "t", now=recent
    )  # sent long ago, rejected lately: it ended lately
    for key in ("can-old", "can-recent", "can-named", "pending-old"):
        await astore.enqueue(NewMessage("other", key, b"{}", "json"), now=old)
    named = Message.get(Message.key == "can-named").id
    await astore.enqueue(NewMessage("other", "waits", b"{}", "json", after_id=named), now=old)
    for keys, when in ((("can-old", "can-named"), old), (("can-recent",), recent)):
        ids = tuple(Message.get(Message.key == k).id for k in keys)
        await astore.cancel(MessageFilter(ids=ids), actor="t", now=when)
    await astore.enqueue(NewMessage("third", "failed-old", b"{}", "json"), now=old)
    [claimed] = await astore.claim(["third"], "w", 1, 60, now=old)
    await astore.record("w", [Failed(claimed.id, "no")], now=old)
    before = statuses()
    assert before["rej-old"] == "rejected" and before["can-old"] == "cancelled"

    result = await purge.run(context(astore, now), purge.PurgeOptions(batch=2))
    assert result["messages"] == 3  # rej-old, can-old, sent-old
    assert statuses() == {
        "rej-recent": "rejected", "can-recent": "cancelled", "can-named": "cancelled",
        "waits": "pending", "pending-old": "pending", "failed-old": "failed",
    }  # fmt: skip
    kept = [m.id for m in Message.select(Message.id)]
    assert StatusEvent.select().where(StatusEvent.message.not_in(kept)).count() == 0


# --- export -------------------------------------------------------------------------------


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("kind", "fire", "start", "end"),
    [
        # last month in Europe/Berlin, at 06:00 on the 1st
        ("last_month", _utc(2026, 3, 1, 5), _berlin(2026, 2, 1), _berlin(2026, 3, 1)),
        ("last_month", _utc(2026, 1, 1, 5), _berlin(2025, 12, 1), _berlin(2026, 1, 1)),
        # yesterday across the spring change: a day of 23 hours
        ("yesterday", _utc(2026, 3, 30, 5), _berlin(2026, 3, 29), _berlin(2026, 3, 30)),
        # last week: Monday to Monday before the fire's week
        ("last_week", _utc(2026, 11, 25, 5), _berlin(2026, 11, 16), _berlin(2026, 11, 23)),
        ("last_24h", _utc(2026, 11, 25, 5), _utc(2026, 11, 24, 5), _utc(2026, 11, 25, 5)),
    ],
)
def test_export_periods_in_the_schedules_zone(kind, fire, start, end):
    got = export.period(kind, fire, BERLIN)
    assert got == (start, end)
    if kind == "yesterday":
        assert got[1].astimezone(UTC) - got[0].astimezone(UTC) == timedelta(hours=23)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
async def test_export_writes_the_periods_messages_whole_under_a_temporary_name(
    astore, tmp_path, fmt
):
    fire = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    inside = datetime(2026, 2, 14, 12, tzinfo=BERLIN)
    before = datetime(2026, 1, 31, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: January
    await sent(astore, None, ["in-1", "in-2"], inside)
    await astore.enqueue(NewMessage("filings", "out", b"\xff binary", "raw"), now=before)
    await astore.enqueue(NewMessage("filings", "in-bin", b"\xff\x00", "raw"), now=inside)
    options = export.ExportOptions(
        what="messages", period="last_month", format=fmt, directory=str(tmp_path / "x")
    )
    output = await export.run(context(astore, fire), options)
    path = Path(output["path"])
    assert path.name == f"test-messages-2026-02-01.{fmt}"
    assert output["rows"] == 3 and output["bytes"] == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    text = path.read_text()
    if fmt == "csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        rows = [json.loads(line) for line in text.splitlines()]
    assert sorted(r["key"] for r in rows) == ["in-1", "in-2", "in-bin"]
    binary = next(r for r in rows if r["key"] == "in-bin")
    assert binary["payload_encoding"] == "base64"


async def test_export_of_a_query_against_a_source(astore, tmp_path):
    import sqlite3

    khanza = tmp_path / "k.db"
    conn = sqlite3.connect(khanza)
    conn.execute("CREATE TABLE reg_periksa (no_rawat TEXT, tgl_registrasi TEXT)")
    conn.executemany(
        "INSERT INTO reg_periksa VALUES (?, ?)", [("A", "2026-02-10"), ("B", "2026-03-02")]
    )
    conn.commit()
    conn.close()
    fire = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    text = (
        "channels: {bpjs: {kind: bpjs_antrean, base_url: 'http://127.0.0.1:9/', cons_id: '1',"
        " secret: s, user_key: k}}\n"
        f"sources: {{rs: {{kind: khanza, dsn: 'sqlite:///{khanza}', channel: bpjs,"
        " timezone: Europe/Berlin}}\n"
    )
    options = export.ExportOptions(
        what="query", source="rs", directory=str(tmp_path / "out"), period="last_month",
        sql="SELECT no_rawat, tgl_registrasi FROM reg_periksa WHERE tgl_registrasi >= %(start)s "
        "AND tgl_registrasi < %(end)s",
    )  # fmt: skip
    output = await export.run(context(astore, fire, text), options)
    assert output["rows"] == 1
    assert Path(output["path"]).read_text().splitlines() == [
        "no_rawat,tgl_registrasi",
        "A,2026-02-10",
    ]


def test_export_options_refuse_what_cannot_work():
    with pytest.raises(ValueError, match="what: query needs source"):
        export.ExportOptions(what="query")
    with pytest.raises(ValueError, match="channel is for what: messages"):
        export.ExportOptions(what="runs", channel="x")
    with pytest.raises(ValueError, match="is not one of"):
        export.ExportOptions(what="runs", name="{nope}.csv")


# --- http and report -----------------------------------------------------------------------


async def test_http_job_succeeds_on_2xx_and_fails_on_anything_else(astore):
    async with HttpSink() as sink:
        ctx = context(astore, datetime.now(UTC))
        options = http.HttpJobOptions(url=sink.url("/ping"), method="POST", body={"a": 1})
        assert (await http.run(ctx, options))["status"] == 200
        assert sink.requests[-1].json() == {"a": 1}
        sink.faults.status = 500
        with pytest.raises(JobFailed, match="answered HTTP 500"):
            await http.run(ctx, options)
        sink.faults.status, sink.faults.delay = 200, 2.0
        with pytest.raises(JobFailed, match=r"no answer within 0\.2s"):
            await http.run(ctx, options.model_copy(update={"timeout": 0.2}))


async def test_the_run_fills_an_http_jobs_url_headers_and_body(astore):
    fire = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 2 March, 00:30 in Berlin
    async with HttpSink() as sink:
        options = http.HttpJobOptions.model_validate({
            "url": sink.url("/report/{{schedule}}") + "?day={{fire_local:%Y-%m-%d %H:%M}}",
            "method": "POST",
            "headers": {"Idempotency-Key": "{{schedule}}-{{fire:%Y%m%dT%H%M}}"},
            "body": {"period": "{{fire_local:%Y-%m}}", "attempt": "{{attempt}}", "n": 3},
        })  # fmt: skip
        await http.run(context(astore, fire), options)
        [got] = sink.requests
    assert got.path == "/report/test?day=2026-03-02%2000:30"
    assert got.headers["Idempotency-Key"] == "test-20260301T2330"
    assert got.json() == {"period": "2026-03", "attempt": "1", "n": 3}


async def test_the_run_fills_an_export_files_name(astore, tmp_path):
    fire = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    options = export.ExportOptions(
        what="runs", directory=str(tmp_path),
        name="{{schedule}}-{{fire_local:%Y%m%d-%H%M}}-a{{attempt}}-{what}-{start}.{format}",
    )  # fmt: skip
    output = await export.run(context(astore, fire), options)
    assert Path(output["path"]).name == "test-20260302-0030-a1-runs-2026-03-01.csv"


async def test_report_summarises_each_channel_to_its_targets(astore):
    now = datetime.now(UTC)
    await sent(astore, None, ["a", "b"], now)
    await astore.enqueue(NewMessage("hie", "p", b"MSH|", "hl7"), now=now - timedelta(minutes=30))
    got: list[tuple[list[str], str, str]] = []

    async def notify(targets: list[str], subject: str, text: str) -> list[str]:
        got.append((targets, subject, text))
        return [f"{t}: 250 OK" for t in targets]

    out = await report.run(
        context(astore, now, notify=notify), report.ReportOptions(notify=["mail"])
    )
    [(targets, subject, text)] = got
    assert targets == ["mail"] and subject == "outboxd report (test): the last 1d"
    assert "filings: 2 delivered, 0 failed (100.0% delivered); 0 pending" in text
    assert "hie: 0 delivered, 0 failed; 1 pending, the oldest 30m" in text
    assert out == {"channels": 2, "sent_to": ["mail: 250 OK"]}


async def test_purge_deletes_old_webhook_receipts_only(astore):
    from daemon.domain.webhooks import WebhookCall

    now = datetime.now(UTC)
    ages = {"old-1": 100, "old-2": 91, "recent": 10}  # days
    for webhook_id, days in ages.items():
        at = now - timedelta(days=days)
        call = WebhookCall("tax", webhook_id, "filings", b"{}", problem="the body is not JSON")
        await astore.receive_webhook(call, now=at)
    result = await purge.run(context(astore, now), purge.PurgeOptions(batch=1))
    assert result["receipts"] == 2
    assert [r.webhook_id for r in await astore.webhook_receipts()] == ["recent"]
