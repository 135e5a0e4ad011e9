"""Who did it and why, on SQLite and PostgreSQL: the command line names the
account (``$USER``, else the user id's name), retry, cancel, resend and the
schedule steps carry a reason into the audit from the CLI (``--reason``) and the
API (``reason``), bulk operations in every batch; ``outboxd audit`` lists what
``GET /api/v1/audit`` does; ``GET /api/v1/me`` says who is signed in."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.config.loader import load_config
from daemon.config.schedules import definition
from daemon.domain.messages import Failed, NewMessage
from daemon.domain.selection import MessageFilter
from daemon.store.db import open_database
from daemon.store.sync import Store
from tests.integration.api_harness import Api, serve_api
from tests.integration.test_cli import CONFIG
from tests.support.cli import Cli

CRON = """
schedules:
  nightly: {cron: "30 2 * * *", job: purge, options: {messages_older_than: 30d}}
"""


def _failed(store: Store, n: int, channel: str = "webhook") -> list[int]:
    results = store.enqueue_many(
        [NewMessage(channel, f"k{i}", b"{}") for i in range(n)], actor="test"
    )
    claimed = store.claim([channel], "w", n, 60)
    store.record("w", [Failed(c.id, "no") for c in claimed])
    return [r.id for r in results]


@pytest.fixture
def workdir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=db_url) + CRON)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUTBOXD_CONFIG", raising=False)
    return tmp_path


@pytest.fixture
def outboxd(cli: Cli):
    """``outboxd ARGS -c outboxd.yaml`` in this process: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        result = cli(*args, "-c", "outboxd.yaml")
        return result.code, result.out, result.err

    return run


@pytest.fixture
def store(db_url: str):
    s = Store(open_database(DatabaseSettings(url=db_url)))
    yield s
    s.close()


def test_without_user_the_cli_names_the_account_of_its_user_id(
    workdir, outboxd, store, monkeypatch: pytest.MonkeyPatch
):
    ids = _failed(store, 1)
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.delenv("LOGNAME", raising=False)
    monkeypatch.delenv("SUDO_USER", raising=False)
    code, _, err = outboxd("retry", "--id", str(ids[0]), "--reason", "  INC-4711  ")
    assert code == 0, err
    [entry] = store.audit(limit=1)
    assert entry["actor"] == f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    assert entry["details"]["reason"] == "INC-4711"
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("SUDO_USER", "bob")
    code, _, err = outboxd("cancel", "--id", str(ids[0]))
    assert code == 0, err
    [entry] = store.audit(limit=1)
    assert entry["actor"] == "cli:alice via sudo by bob" and "reason" not in entry["details"]


@pytest.mark.parametrize("reason", ["INC\x001", "a\nb", "r" * 201])
def test_a_reason_that_cannot_be_kept_is_refused_naming_the_option(workdir, outboxd, store, reason):
    ids = _failed(store, 1)
    code, _, err = outboxd("retry", "--id", str(ids[0]), "--reason", reason)
    assert code == 64 and "--reason" in err
    assert store.audit() == []


def test_schedule_steps_from_the_cli_carry_the_reason(workdir, outboxd, store):
    settings = load_config(str(workdir / "outboxd.yaml"))
    store.sync_file_schedules({n: definition(s) for n, s in settings.schedules.items()})
    for args in (
        ("schedules", "pause", "nightly", "--note", "disk full", "--reason", "CHG-1"),
        ("schedules", "resume", "nightly", "--reason", "CHG-2"),
        ("schedules", "run", "nightly", "--reason", "CHG-3"),
        ("schedules", "backfill", "nightly", "--from", "3d", "--until", "1d", "--reason", "CHG-4"),
    ):
        code, _, err = outboxd(*args)
        assert code == 0, (args, err)
    entries = store.audit()
    assert [(e["action"], e["details"]["reason"]) for e in reversed(entries)] == [
        ("schedule.pause", "CHG-1"), ("schedule.resume", "CHG-2"),
        ("schedule.manual", "CHG-3"), ("schedule.backfill", "CHG-4"),
    ]  # fmt: skip


def test_outboxd_audit_lists_what_the_api_does(workdir, outboxd, store):
    ids = _failed(store, 3)
    for i, message in enumerate(ids):
        assert outboxd("retry", "--id", str(message), "--reason", f"T-{i}")[0] == 0
    code, out, err = outboxd("audit", "--json", "--limit", "2")
    assert code == 0, err
    page = json.loads(out)
    assert [e["details"]["reason"] for e in page["items"]] == ["T-2", "T-1"]
    assert page["next"] == page["items"][-1]["id"]
    code, out, _ = outboxd("audit", "--json", "--before", str(page["next"]))
    rest = json.loads(out)
    assert [e["details"]["reason"] for e in rest["items"]] == ["T-0"] and rest["next"] is None
    code, out, _ = outboxd("audit")
    lines = out.splitlines()
    assert len(lines) == 3 and "(why: T-2)" in lines[0] and "retry messages" in lines[0]
    assert outboxd("audit", "--limit", "0")[0] == 64
    assert outboxd("audit", "--before", "x")[0] == 64


def test_each_batch_of_a_bulk_operation_carries_the_reason(store):
    _failed(store, 5)
    selector = MessageFilter(channel="webhook", statuses=("failed",))
    started = store.retry(selector, actor="api:ops", bound=2, reason="INC-9")
    assert started.operation is not None
    while (view := store.advance_operation(started.operation, batch=2)).state == "running":
        pass
    entries = store.audit()
    assert len(entries) == 3 and {e["details"]["reason"] for e in entries} == {"INC-9"}
    assert "reason" not in view.filter


# --- the API ------------------------------------------------------------------------------


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serve_api(db_url) as api:
        yield api


async def test_the_api_carries_a_reason_into_the_audit(api: Api):
    store = api.control.store
    [one] = await store.enqueue_many([NewMessage("hook", "k", b"{}")], actor="test")
    for method, path, body in (
        ("POST", "/api/v1/messages/cancel", {"ids": [one.id], "reason": "INC-1"}),
        ("POST", "/api/v1/messages/retry", {"ids": [one.id], "reason": "INC-2"}),
        ("POST", "/api/v1/schedules/nightly/pause", {"note": "disk", "reason": "INC-3"}),
        ("POST", "/api/v1/schedules/nightly/resume", {"reason": "INC-4"}),
        ("POST", "/api/v1/schedules/nightly/run", {"reason": "INC-5"}),
        ("POST", "/api/v1/schedules/nightly/backfill", {
            "from": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
            "until": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "reason": "INC-6"}),
    ):  # fmt: skip
        status, answer, _ = await api.call(method, path, role="operator", json=body)
        assert status in (200, 202), (path, answer)
    _, audit, _ = await api.call("GET", "/api/v1/audit", role="viewer")
    assert [e["details"]["reason"] for e in reversed(audit["items"])] == [
        f"INC-{i}" for i in range(1, 7)
    ]
    assert {e["actor"] for e in audit["items"]} == {"api:operator-token"}
    status, _, _ = await api.call("POST", "/api/v1/schedules/nightly/run", role="operator")
    assert status == 202  # the body may be left out


@pytest.mark.parametrize("reason", ["INC\u00001", "a\tb", "r" * 201])
async def test_a_reason_the_api_cannot_keep_is_400_naming_it(api: Api, reason):
    store = api.control.store
    [one] = await store.enqueue_many([NewMessage("hook", "k", b"{}")], actor="test")
    for path, body in (
        ("/api/v1/messages/cancel", {"ids": [one.id], "reason": reason}),
        ("/api/v1/schedules/nightly/run", {"reason": reason}),
    ):
        status, problem, _ = await api.call("POST", path, role="operator", json=body)
        assert status == 400 and problem["field"] == "reason", problem
    _, audit, _ = await api.call("GET", "/api/v1/audit")
    assert audit["items"] == []


async def test_me_names_the_token_and_its_role(api: Api, db_url: str):
    for role in ("viewer", "operator", "admin"):
        status, me, _ = await api.call("GET", "/api/v1/me", role=role)
        assert status == 200 and me == {"name": f"{role}-token", "role": role, "tokens": True}
    status, _, _ = await api.call("GET", "/api/v1/me", role=None)
    assert status == 401
    async with serve_api(db_url, tokens=False) as local:
        status, me, _ = await local.call("GET", "/api/v1/me", role=None)
        assert me == {"name": "local", "role": "admin", "tokens": False}


@pytest.mark.parametrize(
    ("argv", "offers"),
    [
        (["retry", "--help"], "--reason"),
        (["schedules", "pause", "--help"], "--reason"),
        (["--help"], "audit"),
        (["audit", "--help"], "--before"),
    ],
)
def test_the_cli_help_offers_reason_and_audit(cli, argv, offers):
    result = cli(*argv)
    assert result.code == 0
    assert offers in result.out
