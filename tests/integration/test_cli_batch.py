"""``outboxd enqueue --batch FILE|-`` and ``--status a,b``, run in this process
through ``daemon.cli.main`` on SQLite and PostgreSQL: JSON Lines checked line by
line as ``POST /api/v1/messages`` checks a batch (the same operator code), stored
500 to a transaction; good lines stored, duplicates counted, refused lines named
by number and reason (exit 65, the rest stored)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from daemon.config.database import DatabaseSettings
from daemon.config.loader import load_config
from daemon.domain.errors import Refused
from daemon.domain.limits import BULK_BATCH, BULK_BOUND
from daemon.domain.messages import Delivered, Failed, NewMessage
from daemon.operator import bulk
from daemon.operator import messages as ops
from daemon.operator.base import Operator
from daemon.operator.requests import BatchIn, parse
from daemon.store.aio import AsyncStore, open_async_store
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.models import MODELS, Message, StatusEvent
from daemon.store.sync import Store
from tests.integration.test_cli import CONFIG, hl7
from tests.support.cli import Cli, Result

C = ("-c", "outboxd.yaml")


@pytest.fixture
def workdir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=db_url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("OUTBOXD_CONFIG", raising=False)
    monkeypatch.delenv("OUTBOXD_DEBUG", raising=False)
    return tmp_path


@pytest.fixture
def cli(cli: Cli) -> Callable[..., Result]:
    """The shared in-process ``outboxd``, on this directory's ``outboxd.yaml``."""
    return lambda *args, **more: cli(*args, *C, **more)


@contextmanager
def opened(url: str) -> Iterator[Store]:
    """A store on ``url``, the model declarations bound to it for the test's queries."""
    store = Store(open_database(DatabaseSettings(url=url)))
    try:
        with store.db.bind_ctx(MODELS):
            yield store
    finally:
        store.close()


def jsonl(*items: Any) -> bytes:
    return b"".join(
        (item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n" for item in items
    )


def message(key: str, channel: str = "hie", **more: Any) -> dict[str, Any]:
    payload: Any = hl7(key).decode() if channel == "hie" else {"visit": key}
    return {"channel": channel, "key": key, "payload": payload, **more}


# --- good, duplicate and refused lines -------------------------------------------------------


def test_good_lines_are_stored_duplicates_counted_and_refused_ones_named(workdir, db_url, cli):
    first = cli("enqueue", "--channel", "hie", "--key", "old", "--json", stdin=hl7("old"))
    assert first.code == 0, first.err
    lines = jsonl(
        message("a"),  # 1
        message("e1", channel="webhook", kind="event", group="g1"),  # 2
        message("a"),  # 3: the same key again, in the same file
        b"",  # 4: blank, passed over
        b"{not json",  # 5
        message("x", channel="nosuch"),  # 6
        {"channel": "hie", "key": "bad", "payload": "PID|1||MRN\r"},  # 7: not HL7 v2
        message("line\nbreak"),  # 8
        message("late", after="ghost"),  # 9: no such prerequisite
        message("b", after="a"),  # 10: after line 1
        {**message("c"), "prio": 1},  # 11
        message("old"),  # 12: stored before
        [1, 2],  # 13
        {"channel": "hie", "key": "k" * 256, "payload": "x"},  # 14
        message("d"),  # 15
    )
    (workdir / "batch.jsonl").write_bytes(lines)
    result = cli("enqueue", "--batch", "batch.jsonl")
    assert result.code == 65, result.err
    assert result.out.strip() == "4 new, 2 duplicate(s), 8 refused"
    refused = result.err.strip().splitlines()
    assert [line.split(":")[0] for line in refused] == [
        f"line {n}" for n in (5, 6, 7, 8, 9, 11, 13, 14)
    ]
    said = dict(line.split(": ", 1) for line in refused)
    assert said["line 5"].startswith("not a JSON object")
    assert said["line 6"] == "channel: unknown channel 'nosuch' (channels: hie, webhook)"
    assert said["line 7"].startswith("payload: not a valid HL7 v2 message")
    assert said["line 8"].startswith("key: holds a character that cannot be shown")
    assert said["line 9"].startswith("after: prerequisite 'ghost' of 'late' does not exist")
    assert said["line 11"] == "prio: unknown field"
    assert said["line 13"] == "not a JSON object"
    assert said["line 14"].startswith("key: String should have at most 255 characters")
    with opened(db_url):
        stored = {m.key: m for m in Message.select()}
        assert set(stored) == {"old", "a", "e1", "b", "d"}
        assert stored["b"].after_id == stored["a"].id  # its prerequisite, from the same file
        assert (stored["e1"].kind, stored["e1"].group_key) == ("event", "g1")
        assert json.loads(bytes(stored["e1"].payload)) == {"visit": "e1"}
        actors = {e.actor for e in StatusEvent.select()}
        assert actors == {"cli"}  # as `outboxd enqueue` of one message
    again = cli("enqueue", "--batch", "batch.jsonl", "--json")
    assert again.code == 65
    report = json.loads(again.out)
    assert (report["new"], report["duplicates"]) == (0, 6)
    assert [(r["line"], r["field"]) for r in report["refused"]] == [
        (5, None), (6, "channel"), (7, "payload"), (8, "key"), (9, "after"), (11, "prio"),
        (13, None), (14, "key"),
    ]  # fmt: skip


def test_a_batch_from_standard_input_all_good_exits_0(workdir, db_url, cli):
    result = cli(
        "enqueue", "--batch", "-",
        stdin=jsonl(*(message(f"k{i}", channel="webhook") for i in range(3))) + b"\n\n",
    )  # fmt: skip
    assert (result.code, result.out.strip(), result.err) == (
        0, "3 new, 0 duplicate(s), 0 refused", ""
    )  # fmt: skip
    empty = cli("enqueue", "--batch", "-", stdin=b"")
    assert (empty.code, empty.out.strip()) == (0, "0 new, 0 duplicate(s), 0 refused")


def test_a_batch_is_stored_500_to_a_transaction_prerequisites_across_them(workdir, db_url, cli):
    """1,203 lines: three transactions; a prerequisite in an earlier one is found,
    and a refused line does not undo the rest of its transaction."""
    items = [message(f"k{i:04}", channel="webhook") for i in range(1203)]
    items[700]["after"] = "k0010"  # stored in the first transaction
    items[1100]["after"] = "k1150"  # later in its own transaction: found
    items[900]["after"] = "k1150"  # in a later transaction: not there yet, refused
    (workdir / "big.jsonl").write_bytes(jsonl(*items))
    result = cli("enqueue", "--batch", "big.jsonl")
    assert result.code == 65
    assert result.out.strip() == "1202 new, 0 duplicate(s), 1 refused"
    assert result.err.startswith("line 901: after: prerequisite 'k1150' of 'k0900'")
    with opened(db_url):
        assert Message.select().count() == 1202
        ids = {m.key: m.id for m in Message.select(Message.key, Message.id)}
        assert Message.get_by_id(ids["k0700"]).after_id == ids["k0010"]
        assert Message.get_by_id(ids["k1100"]).after_id == ids["k1150"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--batch", "b.jsonl", "--channel", "hie"), 64, "--channel cannot go with it"),
        (("--batch", "b.jsonl", "--after", "x"), 64, "--after cannot go with it"),
        (("--batch", "b.jsonl", "payload.hl7"), 64, "payload.hl7 cannot go with it"),
        (("--batch", "b.jsonl", "--key", "k"), 2, "not allowed with argument"),
        (("--batch", "missing.jsonl"), 66, "cannot read batch missing.jsonl"),
        (("--channel", "hie"), 2, "one of the arguments --key --batch is required"),
        (("--key", "k"), 64, "--channel: required"),
    ],
)
def test_the_batch_options_refused_with_their_exit_code(workdir, db_url, cli, args, code, says):
    (workdir / "b.jsonl").write_bytes(jsonl(message("a")))
    result = cli("enqueue", *args)
    assert result.code == code and says in result.err, result.err
    assert result.out == ""
    with opened(db_url):
        assert Message.select().count() == 0


async def test_a_line_and_an_api_batch_item_are_refused_alike(workdir, db_url):
    """The same operator code checks both: the same field, the same reason."""
    good = message("ok")
    bad = [
        message("x", channel="nosuch"),
        {"channel": "hie", "key": "k", "payload": "PID|1\r"},
        message(" spaced"),
        message("k", kind=""),
        {"channel": "hie", "key": "k"},
        {**message("k"), "group": 7},
        {**message("k"), "channel": "9 no"},
        message("late", after="ghost"),
    ]
    settings = load_config(workdir / "outboxd.yaml")
    store = open_async_store(settings.database, in_process=False)
    op = Operator(store, settings, "test")
    try:
        for item in bad:
            report = await ops.enqueue_lines(op, jsonl(good, item).split(b"\n"))
            [line] = report.refused
            assert line.line == 2
            with pytest.raises(Refused) as refused:  # as POST /api/v1/messages does it
                await ops.enqueue(op, parse(BatchIn, {"messages": [good, item]}))
            assert refused.value.field == f"messages[1].{line.field}", (refused.value, line)
            assert str(refused.value) == line.reason
    finally:
        await store.aclose()


# --- --status a,b ----------------------------------------------------------------------------


def test_status_takes_a_comma_separated_list_as_well_as_repeats(workdir, db_url, cli):
    keys = ("a", "b", "c", "d")
    cli("enqueue", "--batch", "-", stdin=jsonl(*(message(k) for k in keys)))
    with opened(db_url) as store:
        ids = {m.key: m.id for m in Message.select()}
        store.claim(["hie"], "w", 3, 60)  # a, b and c; c stays leased (sending)
        store.record("w", [Failed(ids["a"], "no"), Delivered(ids["b"], "AA")])
    listed = json.loads(cli("messages", "list", "--status", "failed,sent", "--json").out)
    assert sorted(m["key"] for m in listed["items"]) == ["a", "b"]
    repeated = json.loads(
        cli("messages", "list", "--status", "failed", "--status", "pending,sent", "--json").out
    )
    assert sorted(m["key"] for m in repeated["items"]) == ["a", "b", "d"]
    dry = cli("retry", "--channel", "hie", "--status", "failed,pending", "--dry-run")
    assert dry.out.splitlines()[0] == "would retry 2 message(s) (dry run: nothing changed)"
    bad = cli("messages", "list", "--status", "failed,lost")
    assert bad.code == 2 and "argument --status: invalid choice: 'lost'" in bad.err
    empty = cli("retry", "--status", ",")
    assert empty.code == 2 and "give one or more" in empty.err
    runs = cli("runs", "nightly", "--status", "queued,bogus")
    assert runs.code == 2 and "invalid choice: 'bogus'" in runs.err


# --- a bulk action from the command line ---------------------------------------------------


def test_a_bulk_retry_from_the_cli_is_paced_as_the_control_role_paces_it(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
):
    """More than BULK_BOUND matches: a bulk operation the command carries to its
    end itself, batch by batch, each followed by a pause at least as long as it
    took (``daemon.operator.bulk.paced_batch``, the control role's too)."""
    url = f"sqlite:///{tmp_path}/outbox.db"
    db = open_database(DatabaseSettings(url=url))
    migrate(db)
    db.close()
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=url))
    monkeypatch.chdir(tmp_path)
    count = BULK_BOUND + 50
    with opened(url) as store:
        for start in range(0, count, 1000):
            keys = range(start, min(start + 1000, count))
            store.enqueue_many([NewMessage("webhook", f"k{i}", b"{}") for i in keys])
            claimed = store.claim(["webhook"], "w", 1000, 60)
            store.record("w", [Failed(c.id, "partner down") for c in claimed])
    pauses: list[float] = []
    took: list[float] = []
    real_sleep, real_advance = asyncio.sleep, AsyncStore.advance_operation

    async def sleep(delay: float, *args: Any) -> Any:
        pauses.append(delay)
        return await real_sleep(delay, *args)

    async def advance(self: AsyncStore, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await real_advance.__get__(self, AsyncStore)(*args, **kwargs)
        finally:
            took.append(time.monotonic() - started)

    monkeypatch.setattr(bulk.asyncio, "sleep", sleep)
    monkeypatch.setattr(AsyncStore, "advance_operation", advance)
    result = cli("retry", "--channel", "webhook", "--status", "failed")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"retrying {count} message(s) in batches (operation 1)"
    assert lines[1:-1] == [f"  {min(n * BULK_BATCH, count)} of {count}" for n in range(1, 12)]
    assert lines[-1] == f"retried {count} message(s)"
    assert len(took) == 11 and len(pauses) == 10  # none after the last batch
    assert all(p >= max(bulk.MIN_PAUSE, t) for p, t in zip(pauses, took, strict=False))
    with opened(url):
        assert Message.select().where(Message.status == "pending").count() == count
