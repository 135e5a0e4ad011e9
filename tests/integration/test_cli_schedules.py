"""``outboxd schedules …`` and ``outboxd runs NAME`` as an operator uses them: what
each prints and exits with, and what it leaves in the database (the schedules,
the fire ledger, the audit) on SQLite and PostgreSQL.

The commands run in this process through ``daemon.cli.main`` (as the hostile CLI
fuzz does: a real process costs a second each); one test runs them as real
processes. Nothing here starts a scheduler: the YAML file's schedules reach the
database the way a scheduler's start writes them (``sync_file_schedules``)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.config.database import DatabaseSettings
from daemon.config.loader import load_config
from daemon.config.schedules import definition
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from daemon.store.models import MODELS, AuditEntry, JobRun
from daemon.store.sync import Store
from tests.integration.test_cli import ROOT
from tests.support.cli import Cli, Result

# A file schedule at 02:30 in Europe/Berlin: on 2026-03-29 that wall time does not
# exist (the clocks go from 02:00 to 03:00), on 2026-10-25 it happens twice.
CONFIG = """
database: {url}
timezone: Asia/Jakarta
schedules:
  nightly:
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    job: purge
"""
C = ("-c", "outboxd.yaml")
HOOK = ("--job", "http", "--options", '{"url": "http://127.0.0.1:9/hook"}')
FIRE_FIELDS = {"at", "local", "note"}
RUN_FIELDS = {
    "id", "schedule", "fire_time", "attempt", "trigger", "status", "started_at",
    "finished_at", "error", "output", "note", "retry_of", "cancel_requested",
}  # fmt: skip
LIMIT_FIELDS = {"start_at", "end_at", "max_runs", "runs_made", "max_concurrent"}
LIST_FIELDS = {
    "name", "job", "when", "timezone", "origin", "state", "paused", "next", "last_run",
    *LIMIT_FIELDS,
}  # fmt: skip
SHOW_FIELDS = {
    "name", "origin", "revision", "state", "paused", "pause_note", "paused_by", "file_differs",
    "definition", "next", "runs", *LIMIT_FIELDS,
}  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=db_url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER", "alice")  # the actor: cli:alice
    monkeypatch.delenv("OUTBOXD_CONFIG", raising=False)
    monkeypatch.delenv("OUTBOXD_DEBUG", raising=False)
    return tmp_path


@pytest.fixture
def sqlite_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For what is refused before the database is used: one backend is enough."""
    url = f"sqlite:///{tmp_path}/outbox.db"
    db = open_database(DatabaseSettings(url=url))
    migrate(db)
    db.close()
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUTBOXD_CONFIG", raising=False)
    monkeypatch.delenv("OUTBOXD_DEBUG", raising=False)
    return tmp_path


@pytest.fixture
def cli(cli: Cli) -> Callable[..., Result]:
    """The shared in-process ``outboxd``, on this directory's ``outboxd.yaml``."""
    return lambda *args, **more: cli(*args, *C, **more)


def ok(result: Result) -> str:
    assert result.code == 0, result.err
    assert result.err == ""
    return result.out


def listed(cli) -> set[str]:
    """The names ``schedules list`` shows."""
    return {item["name"] for item in cli("schedules", "list", "--json").json()}


def refused(result: Result, code: int, says: str) -> None:
    assert result.code == code, (result.code, result.err)
    assert says in result.err, result.err
    if code != 2:  # argparse prints its usage first
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert result.err.startswith("outboxd: ")
    assert result.out == ""


@contextmanager
def opened(url: str) -> Iterator[Store]:
    store = Store(open_database(DatabaseSettings(url=url)))
    try:
        with store.db.bind_ctx(MODELS):  # the model declarations, for the test's queries
            yield store
    finally:
        store.close()


def start_scheduler(workdir: Path, url: str) -> None:
    """What a scheduler does first: write the file's schedules to the database."""
    settings = load_config(workdir / "outboxd.yaml")
    with opened(url) as store:
        store.sync_file_schedules({n: definition(s) for n, s in settings.schedules.items()})


def runs_of(url: str, name: str) -> list[JobRun]:
    with opened(url) as store:
        row = store.schedule(name)
        assert row is not None
        return list(JobRun.select().where(JobRun.schedule == row.id).order_by(JobRun.fire_time))


def audit(url: str) -> list[AuditEntry]:
    with opened(url):
        return list(AuditEntry.select().order_by(AuditEntry.id))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- the YAML file's schedules ------------------------------------------------------------


def test_the_files_schedules_are_listed_once_a_scheduler_has_written_them(workdir, db_url, cli):
    """The database is the truth the CLI reads: before any scheduler started, the
    file's schedules are listed as not loaded, and cannot be acted on yet."""
    line = ok(cli("schedules", "list")).strip()
    assert line.startswith("nightly: purge, cron '30 2 * * *' (Europe/Berlin), in the file, ")
    assert "not loaded yet" in line
    [item] = cli("schedules", "list", "--json").json()
    assert set(item) == LIST_FIELDS and item["next"] is None
    assert item["state"].startswith("in the file, not loaded yet")
    for args in (("show", "nightly"), ("run", "nightly"), ("pause", "nightly", "--note", "x")):
        refused(cli("schedules", *args), 65, "schedule 'nightly' is in the file, not loaded yet")
    refused(cli("runs", "nightly"), 65, "not loaded yet")
    start_scheduler(workdir, db_url)
    line = ok(cli("schedules", "list")).strip()
    assert line.startswith("nightly: purge, cron '30 2 * * *' (Europe/Berlin), enabled, next ")
    assert line.endswith(", last run - [file]")
    [item] = cli("schedules", "list", "--json").json()
    assert set(item) == LIST_FIELDS
    assert item["origin"] == "file" and item["timezone"] == "Europe/Berlin"
    assert item["state"] == "enabled" and item["last_run"] is None
    assert set(item["next"]) == FIRE_FIELDS
    assert datetime.fromisoformat(item["next"]["local"]).strftime("%H:%M") == "02:30"
    shown = ok(cli("schedules", "show", "nightly"))
    assert "from the YAML file, revision 1" in shown


def test_a_file_schedule_cannot_be_edited_or_removed_from_the_cli(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    refused(
        cli("schedules", "edit", "nightly", "--cron", "0 3 * * *"),
        65,
        "schedule 'nightly' is defined in the YAML file: change it there",
    )
    refused(
        cli("schedules", "remove", "nightly"),
        65,
        "schedule 'nightly' is defined in the YAML file: remove it there",
    )
    refused(
        cli("schedules", "add", "nightly", *HOOK, "--every", "1h"), 65, "is the file's: change it"
    )
    shown = cli("schedules", "show", "nightly", "--json").json()
    assert shown["revision"] == 1 and shown["definition"]["cron"] == "30 2 * * *"
    assert shown["definition"]["job"] == "purge"
    assert audit(db_url) == []


# --- add, edit, remove ------------------------------------------------------------------


def test_add_then_show_and_list(workdir, db_url, cli):
    out = ok(
        cli(
            "schedules", "add", "hook", *HOOK, "--every", "15m", "--timezone", "Europe/Berlin",
            "--with", "overlap=queue_one", "--with", "catch_up=2h",
        )
    )  # fmt: skip
    assert out.strip() == "schedule hook added (every 15m)"
    shown = cli("schedules", "show", "hook", "--json").json()
    assert set(shown) == SHOW_FIELDS
    assert shown["origin"] == "operator" and shown["revision"] == 1
    assert shown["paused"] is False and shown["pause_note"] is None and shown["paused_by"] is None
    spec = shown["definition"]
    assert spec["every"] == 900.0 and spec["cron"] is None
    assert spec["timezone"] == "Europe/Berlin"
    assert spec["overlap"] == "queue_one" and spec["catch_up"] == 7200.0
    assert spec["options"]["url"] == "http://127.0.0.1:9/hook"
    assert spec["options"]["method"] == "GET"  # every default written out
    assert len(shown["next"]) == 5 and all(set(f) == FIRE_FIELDS for f in shown["next"])
    steps = [datetime.fromisoformat(f["at"]) for f in shown["next"]]
    assert {b - a for a, b in itertools.pairwise(steps)} == {timedelta(minutes=15)}
    assert shown["runs"] == []
    text = ok(cli("schedules", "show", "hook")).splitlines()
    assert text[0] == "hook: http, every 15m (Europe/Berlin)"
    assert text[1] == "  enabled; from the CLI or the API, revision 1"
    assert text[2] == "  overlap queue_one, catch up 2h, retry up to 3 runs"
    assert text[3] == "next fires:" and text[-1] == "recent runs:"
    [line] = [x for x in ok(cli("schedules", "list")).splitlines() if x.startswith("hook:")]
    assert line.startswith("hook: http, every 15m (Europe/Berlin), enabled, next ")
    assert line.endswith("last run - [operator]")
    [entry] = audit(db_url)
    assert (entry.actor, entry.action, entry.target) == (
        "cli:alice",
        "schedule.add",
        "schedule hook",
    )
    assert entry.details["definition"] == spec and entry.changed == 1


def test_add_a_bounded_command_schedule_and_show_its_bounds(workdir, db_url, cli):
    out = ok(cli(
        "schedules", "add", "claims", "--job", "command", "--cron", "0 1 1 * *",
        "--options", '{"command": ["/opt/rs/bin/export", "{{fire_local:%Y-%m}}"]}',
        "--with", "start_at=2030-01-01", "--with", "end_at=2030-12-31",
        "--with", "max_runs=3", "--with", "overlap=allow", "--with", "max_concurrent=2",
    ))  # fmt: skip
    assert out.strip() == "schedule claims added (cron '0 1 1 * *')"
    shown = cli("schedules", "show", "claims", "--json").json()
    assert (shown["start_at"], shown["end_at"]) == ("2030-01-01T00:00:00", "2030-12-31T00:00:00")
    assert (shown["max_runs"], shown["runs_made"], shown["max_concurrent"]) == (3, 0, 2)
    assert shown["next"][0]["local"].startswith("2030-01-01T01:00:00+07:00")
    text = ok(cli("schedules", "show", "claims")).splitlines()
    assert text[2] == "  overlap allow (at most 2 at once), catch up 1h, retry up to 3 runs"
    assert text[3] == "  from 2030-01-01T00:00:00, until 2030-12-31T00:00:00, 0 of 3 runs made"
    refused(cli("schedules", "edit", "claims", "--with", "overlap=skip"), 65,
            "max_concurrent: max_concurrent is for overlap: allow")  # fmt: skip
    refused(cli("schedules", "edit", "claims", "--with", "end_at=2029-01-01"), 65,
            "end_at: end_at (2029-01-01T00:00:00) is not later than start_at")  # fmt: skip
    refused(cli("schedules", "edit", "claims", "--with", "end_at=2030-01-01T00:30:00"), 65,
            "end_at: the schedule never fires from start_at")  # fmt: skip
    ok(cli("schedules", "edit", "claims", "--with", "end_at=2025-06-01", "--with",
           "start_at=2025-01-01"))  # fmt: skip
    [line] = [x for x in ok(cli("schedules", "list")).splitlines() if x.startswith("claims:")]
    assert "ended: its end_at (2025-06-01T00:00:00+07:00) has passed, next -" in line


def test_a_name_is_added_once(workdir, db_url, cli):
    ok(cli("schedules", "add", "hook", *HOOK, "--every", "1h"))
    refused(
        cli("schedules", "add", "hook", *HOOK, "--every", "2h"),
        65,
        "a schedule named 'hook' exists (edit it instead)",
    )
    assert cli("schedules", "show", "hook", "--json").json()["definition"]["every"] == 3600.0


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--cron", "61 * * * *"), 65, "invalid cron expression '61 * * * *': minute '61'"),
        (("--cron", "* * *"), 65, "expected 5 fields"),
        (("--cron", "0 25 * * *"), 65, "invalid cron expression"),
        (
            ("--every", "1h", "--timezone", "Mars/Olympus"),
            65,
            "timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            ("--every", "1h", "--options", '{"url": "http://h/", "bogus": 1}'),
            65,
            "options.bogus: ",
        ),
        (("--every", "1h", "--with", "overlap=sometimes"), 65, "overlap: "),
        (("--every", "1h", "--with", "wat=1"), 65, "wat: "),
        (("--cron", "0 * * * *", "--with", "anchor=2026-01-01"), 65, "anchor is for every"),
        (("--every", "0s"), 65, "every: "),
        (("--every", "1h", "--cron", "0 * * * *"), 65, "give cron or every, one of them"),
        ((), 65, "give cron or every, one of them"),
        (("--every", "1h", "--with", "nokey"), 64, "--with 'nokey': expected KEY=VALUE"),
        (("--every", "1h", "--with", "overlap=[x"), 64, "the value is not YAML"),
        (("--every", "1h", "--options", "[1]"), 64, "--options: not a JSON object"),
        (("--every", "1h", "--options", "{"), 64, "--options: not a JSON object"),
    ],
)
def test_add_refuses_a_schedule_that_is_not_valid(sqlite_workdir, cli, args, code, says):
    options = () if "--options" in args else HOOK[2:]
    refused(cli("schedules", "add", "bad", "--job", "http", *options, *args), code, says)
    assert listed(cli) == {"nightly"}  # the file's only


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("bad", "--job", "nosuch", "--every", "1h"), 65, "'nosuch'"),
        (
            ("bad", "--job", "purge", "--every", "1h", "--options", '{"url": "http://h/"}'),
            65,
            "options.url: ",  # an option of another kind
        ),
        (("bad", "--job", "report", "--every", "1h"), 65, "required"),  # options.notify
        (("1bad", *HOOK, "--every", "1h"), 64, "invalid name '1bad'"),
        (("has space", *HOOK, "--every", "1h"), 64, "invalid name 'has space'"),
        (("bad", "--every", "1h"), 2, "the following arguments are required: --job"),
    ],
)
def test_add_refuses_a_bad_job_or_name(sqlite_workdir, cli, args, code, says):
    refused(cli("schedules", "add", *args), code, says)


def test_edit_changes_an_operators_schedule(workdir, db_url, cli):
    ok(cli("schedules", "add", "hook", *HOOK, "--every", "15m"))
    out = ok(
        cli("schedules", "edit", "hook", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin")
    )
    assert out.strip() == "schedule hook changed"
    shown = cli("schedules", "show", "hook", "--json").json()
    assert shown["revision"] == 2
    assert shown["definition"]["cron"] == "30 2 * * *" and shown["definition"]["every"] is None
    assert shown["definition"]["options"]["url"] == "http://127.0.0.1:9/hook"  # kept
    assert ok(cli("schedules", "edit", "hook", "--timezone", "Europe/Berlin")).strip() == (
        "schedule hook unchanged"
    )
    ok(cli("schedules", "edit", "hook", "--with", "on_missing_time=skip"))
    shown = cli("schedules", "show", "hook", "--json").json()
    assert shown["revision"] == 3 and shown["definition"]["on_missing_time"] == "skip"
    refused(cli("schedules", "edit", "hook", "--cron", "99 * * * *"), 65, "not a valid schedule")
    refused(cli("schedules", "edit", "hook", "--timezone", "Nowhere/City"), 65, "unknown time zone")
    refused(
        cli("schedules", "edit", "hook", "--options", '{"url": "http://h/", "retries": 3}'),
        65,
        "options.retries: ",
    )
    assert cli("schedules", "show", "hook", "--json").json()["revision"] == 3  # refused: unchanged
    refused(cli("schedules", "edit", "ghost", "--every", "5m"), 65, "no schedule named 'ghost'")
    actions = [(e.actor, e.action) for e in audit(db_url)]
    assert actions == [("cli:alice", f"schedule.{a}") for a in ("add", "edit", "edit")]


def test_remove_keeps_the_ledger_and_the_name_can_be_added_again(workdir, db_url, cli):
    ok(cli("schedules", "add", "hook", *HOOK, "--every", "1h"))
    ok(cli("schedules", "run", "hook"))
    assert ok(cli("schedules", "remove", "hook")).strip() == "schedule hook removed"
    assert listed(cli) == {"nightly"}  # the file's only
    refused(cli("schedules", "show", "hook"), 65, "no schedule named 'hook'")
    refused(cli("schedules", "run", "hook"), 65, "no schedule named 'hook'")
    refused(cli("schedules", "remove", "hook"), 65, "no schedule named 'hook'")
    [run] = cli("runs", "hook", "--json").json()  # its runs stay, and can be read
    assert run["trigger"] == "manual"
    ok(cli("schedules", "add", "hook", *HOOK, "--every", "2h"))
    shown = cli("schedules", "show", "hook", "--json").json()
    assert shown["origin"] == "operator" and shown["revision"] == 3
    assert shown["definition"]["every"] == 7200.0
    assert [r["id"] for r in shown["runs"]] == [run["id"]]
    assert "schedule.remove" in [e.action for e in audit(db_url)]


# --- pause, resume ----------------------------------------------------------------------


def test_pause_with_a_note_is_audited_shown_and_resumed(workdir, db_url, cli):
    start_scheduler(workdir, db_url)  # a file schedule: operators may pause it
    out = ok(cli("schedules", "pause", "nightly", "--note", "disk full, see INC-42"))
    assert out.strip() == "schedule nightly paused"
    text = ok(cli("schedules", "show", "nightly")).splitlines()
    assert text[1] == "  paused by cli:alice: disk full, see INC-42; from the YAML file, revision 2"
    shown = cli("schedules", "show", "nightly", "--json").json()
    assert shown["paused"] is True
    assert shown["pause_note"] == "disk full, see INC-42" and shown["paused_by"] == "cli:alice"
    [item] = cli("schedules", "list", "--json").json()
    assert item["state"] == "paused by cli:alice: disk full, see INC-42"
    assert item["next"] is None  # a paused schedule does not fire
    assert ", next -, " in ok(cli("schedules", "list"))
    [entry] = audit(db_url)
    assert (entry.actor, entry.action, entry.target) == (
        "cli:alice",
        "schedule.pause",
        "schedule nightly",
    )
    assert entry.details == {"note": "disk full, see INC-42"} and entry.changed == 1

    assert ok(cli("schedules", "resume", "nightly")).strip() == "schedule nightly resumed"
    shown = cli("schedules", "show", "nightly", "--json").json()
    assert shown["paused"] is False and shown["pause_note"] is None and shown["paused_by"] is None
    assert "  enabled; from the YAML file" in ok(cli("schedules", "show", "nightly"))
    assert cli("schedules", "list", "--json").json()[0]["next"] is not None
    assert [e.action for e in audit(db_url)] == ["schedule.pause", "schedule.resume"]
    assert audit(db_url)[1].actor == "cli:alice"


def test_pause_needs_a_note_and_a_schedule(workdir, cli):
    refused(cli("schedules", "pause", "ghost"), 2, "the following arguments are required: --note")
    refused(cli("schedules", "pause", "ghost", "--note", "x"), 65, "no schedule named 'ghost'")
    refused(cli("schedules", "resume", "ghost"), 65, "no schedule named 'ghost'")


def test_a_note_that_would_drive_the_terminal_is_refused(workdir, db_url, cli):
    """The text rule (daemon.domain.limits.text_problem): an escape, a line break or
    a NUL is never stored, so never shown, on either database."""
    ok(cli("schedules", "add", "hook", *HOOK, "--every", "1h"))
    for note in ("\x1b[2Jgone", "two\nlines", "nul\x00"):
        refused(cli("schedules", "pause", "hook", "--note", note), 64, "--note: ")
    assert cli("schedules", "show", "hook", "--json").json()["paused"] is False


# --- run, backfill ----------------------------------------------------------------------


def test_run_queues_a_manual_run(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    before = datetime.now(UTC)
    out = ok(cli("schedules", "run", "nightly"))
    after = datetime.now(UTC)
    [run] = runs_of(db_url, "nightly")
    assert out.strip() == (
        f"run {run.id} of nightly queued; a scheduler starts it within a second or so"
    )
    assert (run.trigger, run.status, run.attempt, run.note) == ("manual", "queued", 1, "run now")
    assert before <= run.fire_time <= after and run.started_at is None
    [entry] = audit(db_url)
    assert (entry.actor, entry.action, entry.changed) == ("cli:alice", "schedule.manual", 1)
    assert entry.details["runs"] == [run.id]
    ok(cli("schedules", "run", "nightly"))  # another instant: another run
    assert [r.trigger for r in runs_of(db_url, "nightly")] == ["manual", "manual"]
    refused(cli("schedules", "run", "ghost"), 65, "no schedule named 'ghost'")


def test_cancel_a_queued_run_at_once_and_ask_for_a_running_one(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    ok(cli("schedules", "run", "nightly"))
    [queued] = runs_of(db_url, "nightly")
    out = ok(cli("schedules", "cancel", "nightly", str(queued.id), "--note", "not today"))
    assert out.strip() == f"run {queued.id} of nightly cancelled (it had not started)"
    [run] = runs_of(db_url, "nightly")
    assert (run.status, run.error) == ("cancelled", "cancelled by cli:alice: not today")
    entry = audit(db_url)[-1]
    assert (entry.actor, entry.action, entry.target) == (
        "cli:alice", "run.cancel", f"run {queued.id} of nightly")  # fmt: skip
    assert entry.details["note"] == "not today" and entry.details["status"] == "queued"
    # a running one: the cancel is asked for; the scheduler holding it stops it
    with opened(db_url) as store:
        running = store.claim_fire(run.schedule_id, utc(2026, 1, 1), "cron", "sched-1", 60,
                                   "skip")  # fmt: skip
    assert running is not None
    out = ok(cli("schedules", "cancel", "nightly", str(running.id)))
    assert "cancel asked for; the scheduler running it stops its job" in out
    out = ok(cli("schedules", "cancel", "nightly", str(running.id)))
    assert "cancel asked for (asked already)" in out
    shown = cli("runs", "nightly", "--json").json()
    assert shown[0]["status"] == "running" and shown[0]["cancel_requested"]["by"] == "cli:alice"
    assert "cancel asked for (cancelled by cli:alice)" in ok(cli("runs", "nightly"))
    assert [e.action for e in audit(db_url)].count("run.cancel") == 2  # the repeat: nothing
    refused(
        cli("schedules", "cancel", "nightly", str(queued.id)),
        65,
        f"run {queued.id} of nightly is cancelled: only a queued or running run",
    )
    refused(cli("schedules", "cancel", "nightly", "999999"), 65, "no run 999999 of nightly")
    refused(cli("schedules", "cancel", "ghost", "1"), 65, "no schedule named 'ghost'")
    refused(cli("schedules", "cancel", "nightly", "x"), 2, "invalid int value")


def test_notifications_lists_what_was_sent(workdir, db_url, cli):
    with opened(db_url) as store:
        store.record_notification("run_failed:nightly", "nightly", "firing", "mail", True, "250",
                                  title="outboxd alert: run_failed:nightly: nightly",
                                  text="the last run of nightly failed: boom\n")  # fmt: skip
        store.record_notification("run_failed:nightly", "nightly", "firing", "hook", False,
                                  "HTTP 500", title="outboxd alert: …")  # fmt: skip
    out = ok(cli("notifications"))
    lines = out.splitlines()
    assert lines[0].endswith("firing run_failed:nightly about nightly to hook: FAILED — "
                             "outboxd alert: …")  # fmt: skip
    assert lines[1] == "    answer: HTTP 500"
    assert "to mail: sent — outboxd alert: run_failed:nightly: nightly" in lines[2]
    out = ok(cli("notifications", "--target", "mail", "--text"))
    assert "    | the last run of nightly failed: boom" in out and "hook" not in out
    assert [n["target"] for n in cli("notifications", "--failed", "--json").json()] == ["hook"]
    assert ok(cli("notifications", "--event", "resolved")) == "no notifications sent\n"
    refused(cli("notifications", "--event", "gone"), 2, "invalid choice: 'gone'")
    refused(cli("notifications", "--limit", "0"), 64, "--limit: 1 to 10,000")


# 2026-03-27 … 2026-03-30 at 02:30 Europe/Berlin; on the 29th 02:30 does not
# exist and the fire is at 03:30 CEST (shift): 01:30 UTC all the same.
SPRING = [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30)]
SPRING += [utc(2026, 3, 30, 0, 30)]


def test_backfill_queues_one_run_per_fire_once(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    window = ("--from", "2026-03-27", "--until", "2026-03-31")  # in the schedule's zone
    out = ok(cli("schedules", "backfill", "nightly", *window, "--dry-run"))
    assert out.strip() == "4 fire(s) of nightly in the range; nothing queued (--dry-run)"
    assert runs_of(db_url, "nightly") == [] and audit(db_url) == []
    out = ok(cli("schedules", "backfill", "nightly", *window))
    assert (
        out.strip() == "4 run(s) of nightly queued, one per fire; 0 already in the ledger; "
        "a scheduler starts them within a second or so"
    )
    runs = runs_of(db_url, "nightly")
    assert [r.fire_time for r in runs] == SPRING
    assert {(r.trigger, r.status, r.attempt, r.note) for r in runs} == {
        ("backfill", "queued", 1, "backfill")
    }
    [entry] = audit(db_url)
    assert (entry.actor, entry.action, entry.changed) == ("cli:alice", "schedule.backfill", 4)
    assert entry.details["fires"] == 4
    assert entry.details["from"] == SPRING[0].isoformat()
    assert entry.details["until"] == SPRING[-1].isoformat()
    again = ok(cli("schedules", "backfill", "nightly", *window))
    assert (
        again.strip() == "0 run(s) of nightly queued, one per fire; 4 already in the ledger; "
        "a scheduler starts them within a second or so"
    )
    assert len(runs_of(db_url, "nightly")) == 4


def test_backfill_takes_a_fire_at_either_end_of_the_range(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    ok(cli("schedules", "backfill", "nightly", "--from", "2026-03-27T02:30", "--until",
           "2026-03-28T01:30Z"))  # fmt: skip
    assert [r.fire_time for r in runs_of(db_url, "nightly")] == SPRING[:2]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (
            ("--from", "2026-03-31", "--until", "2026-03-27"),
            64,
            "--until must be later than --from",
        ),
        (
            ("--from", "2026-03-27", "--until", "2026-03-27"),
            64,
            "--until must be later than --from",
        ),
        (("--from", "yesterday", "--until", "2026-03-27"), 64, "--from: invalid time 'yesterday'"),
        (("--from", "2026-03-27", "--until", "soon"), 64, "--until: invalid time 'soon'"),
        (("--from", "9999-12-30", "--until", "9999-12-31T23:59"), 64, "--until is in the future"),
        (("--from", "1h", "--until", "9999-12-31"), 64, "--until is in the future"),
        (("--from", "2026-03-27"), 2, "the following arguments are required: --until"),
    ],
)
def test_backfill_refuses_a_range_it_cannot_take(workdir, db_url, cli, args, code, says):
    start_scheduler(workdir, db_url)
    refused(cli("schedules", "backfill", "nightly", *args), code, says)
    assert runs_of(db_url, "nightly") == [] and audit(db_url) == []


def test_backfill_takes_up_to_10000_fires(workdir, db_url, cli):
    ok(cli("schedules", "add", "often", *HOOK, "--every", "1m", "--timezone", "UTC"))
    last = (utc(2026, 1, 1) + timedelta(minutes=9_999)).strftime("%Y-%m-%dT%H:%M")
    window = ("--from", "2026-01-01T00:00", "--until", last)  # both ends in: 10,000 fires
    out = ok(cli("schedules", "backfill", "often", *window, "--dry-run"))
    assert out.startswith("10000 fire(s) of often in the range")
    window = ("--from", "2026-01-01T00:00", "--until", "2026-01-08T00:00")
    refused(cli("schedules", "backfill", "often", *window), 64, "more than 10,000 fires")
    assert runs_of(db_url, "often") == []


def test_backfill_of_an_unknown_schedule(workdir, cli):
    refused(
        cli("schedules", "backfill", "ghost", "--from", "2026-03-27", "--until", "2026-03-28"),
        65,
        "no schedule named 'ghost'",
    )


# --- preview ----------------------------------------------------------------------------

BERLIN = ("--cron", "30 2 * * *", "--timezone", "Europe/Berlin")


def test_preview_across_spring_forward_shifts_the_missing_time(sqlite_workdir, cli):
    lines = ok(cli("schedules", "preview", *BERLIN, "--from", "2026-03-28", "--count", "3"))
    assert lines.splitlines() == [
        "  2026-03-28 02:30:00 CET   2026-03-28 01:30:00 UTC",
        "  2026-03-29 03:30:00 CEST   2026-03-29 01:30:00 UTC"
        "  (02:30 does not exist on 2026-03-29; run at 03:30 CEST)",
        "  2026-03-30 02:30:00 CEST   2026-03-30 00:30:00 UTC",
    ]
    fires = cli("schedules", "preview", *BERLIN, "--from", "2026-03-28", "--count", "3", "--json")
    assert fires.json() == [
        {"at": "2026-03-28T01:30:00+00:00", "local": "2026-03-28T02:30:00+01:00", "note": None},
        {
            "at": "2026-03-29T01:30:00+00:00",
            "local": "2026-03-29T03:30:00+02:00",
            "note": "02:30 does not exist on 2026-03-29; run at 03:30 CEST",
        },
        {"at": "2026-03-30T00:30:00+00:00", "local": "2026-03-30T02:30:00+02:00", "note": None},
    ]


def test_preview_across_spring_forward_can_skip_the_day(sqlite_workdir, cli):
    fires = cli(
        "schedules", "preview", *BERLIN, "--with", "on_missing_time=skip",
        "--from", "2026-03-28", "--count", "2", "--json",
    ).json()  # fmt: skip
    assert [f["local"] for f in fires] == ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("once", [("2026-10-25T00:30:00+00:00", "2026-10-25T02:30:00+02:00")]),
        (
            "twice",
            [
                ("2026-10-25T00:30:00+00:00", "2026-10-25T02:30:00+02:00"),
                ("2026-10-25T01:30:00+00:00", "2026-10-25T02:30:00+01:00"),
            ],
        ),
    ],
)
def test_preview_across_fall_back_runs_the_repeated_time_once_or_twice(
    sqlite_workdir, cli, rule, expected
):
    fires = cli(
        "schedules", "preview", *BERLIN, "--with", f"on_repeated_time={rule}",
        "--from", "2026-10-25T00:00", "--count", "3", "--json",
    ).json()  # fmt: skip
    on_the_25th = [(f["at"], f["local"]) for f in fires if f["local"].startswith("2026-10-25")]
    assert on_the_25th == expected
    if rule == "twice":
        assert fires[1]["note"] == "02:30 again, the hour repeated"


def test_preview_of_an_interval_ignores_the_clock_change(sqlite_workdir, cli):
    fires = cli(
        "schedules", "preview", "--every", "1h", "--timezone", "Europe/Berlin",
        "--from", "2026-03-28T23:30", "--count", "3", "--json",
    ).json()  # fmt: skip
    assert [f["at"] for f in fires] == [
        "2026-03-28T23:00:00+00:00",
        "2026-03-29T00:00:00+00:00",
        "2026-03-29T01:00:00+00:00",
    ]
    assert [f["local"][11:16] for f in fires] == ["00:00", "01:00", "03:00"]


def test_preview_reads_from_in_the_configured_zone_and_an_age(sqlite_workdir, cli):
    [fire] = cli(
        "schedules", "preview", "--cron", "0 9 * * *", "--from", "2026-05-01T10:00", "--count",
        "1", "--json",
    ).json()  # fmt: skip
    assert fire == {  # the file's zone, Asia/Jakarta
        "at": "2026-05-02T02:00:00+00:00",
        "local": "2026-05-02T09:00:00+07:00",
        "note": None,
    }
    [fire] = cli(
        "schedules", "preview", "--every", "1m", "--from", "2h", "--count", "1", "--json"
    ).json()
    ago = datetime.now(UTC) - datetime.fromisoformat(fire["at"])
    assert timedelta(minutes=118) < ago <= timedelta(hours=2)


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 L-29 feb *"])
def test_an_expression_that_never_fires_is_refused(workdir, cli, expression):
    says = f"cron: invalid cron expression '{expression}': it never fires"
    refused(cli("schedules", "preview", "--cron", expression), 65, says)
    refused(cli("schedules", "add", "never", *HOOK, "--cron", expression), 65, says)
    ok(cli("schedules", "add", "month-end", *HOOK, "--cron", "0 23 L * *"))
    refused(cli("schedules", "edit", "month-end", "--cron", expression), 65, says)
    assert cli("schedules", "show", "month-end", "--json").json()["definition"]["cron"] == (
        "0 23 L * *"
    )
    assert listed(cli) == {"nightly", "month-end"}


def test_preview_of_the_day_fields(sqlite_workdir, cli):
    def days(expression: str) -> list[str]:
        fires = cli(
            "schedules", "preview", "--cron", expression, "--timezone", "UTC",
            "--from", "2027-01-01", "--count", "4", "--json",
        ).json()  # fmt: skip
        return [datetime.fromisoformat(f["local"]).strftime("%a %d %b") for f in fires]

    assert days("0 0 */2 * *") == ["Fri 01 Jan", "Sun 03 Jan", "Tue 05 Jan", "Thu 07 Jan"]
    assert days("0 0 * * */2") == ["Sat 02 Jan", "Sun 03 Jan", "Tue 05 Jan", "Thu 07 Jan"]
    assert days("0 0 */10 * 1") == ["Mon 11 Jan", "Mon 01 Feb", "Mon 01 Mar", "Mon 31 May"]
    assert days("0 0 * * 5/2") == ["Fri 01 Jan", "Sun 03 Jan", "Fri 08 Jan", "Sun 10 Jan"]
    assert days("0 0 L * *") == ["Sun 31 Jan", "Sun 28 Feb", "Wed 31 Mar", "Fri 30 Apr"]
    assert days("0 0 * * mon#1") == ["Mon 04 Jan", "Mon 01 Feb", "Mon 01 Mar", "Mon 05 Apr"]


def test_preview_of_a_stored_schedule(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    fires = cli(
        "schedules", "preview", "nightly", "--from", "2026-03-29", "--count", "1", "--json"
    ).json()
    assert fires == [
        {
            "at": "2026-03-29T01:30:00+00:00",
            "local": "2026-03-29T03:30:00+02:00",
            "note": "02:30 does not exist on 2026-03-29; run at 03:30 CEST",
        }
    ]
    ok(cli("schedules", "pause", "nightly", "--note", "x"))
    assert len(cli("schedules", "preview", "nightly", "--json").json()) == 10  # what it would do
    refused(cli("schedules", "preview", "ghost"), 65, "no schedule named 'ghost'")


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ((), 64, "give a schedule's name, or --cron EXPR or --every DURATION"),
        (("--cron", "* * * * *", "--every", "1h"), 64, "give a schedule's name, or --cron"),
        (("nightly", "--cron", "* * * * *"), 64, "give a schedule's name, or --cron / --every"),
        (("--cron", "61 2 * * *"), 65, "invalid cron expression '61 2 * * *': minute '61'"),
        (("--cron", "@sometimes"), 65, "invalid cron expression"),
        (("--every", "soon"), 65, "invalid duration 'soon'"),
        (("--every", "0s"), 65, "every: "),
        (("--cron", "0 * * * *", "--timezone", "Nowhere/City"), 65, "unknown time zone"),
        (("--cron", "0 * * * *", "--with", "skip=[mondays]"), 65, "skip"),
        (("--every", "1h", "--count", "0"), 64, "--count: 1 to 1000"),
        (("--every", "1h", "--count", "1001"), 64, "--count: 1 to 1000"),
        (("--every", "1h", "--count", "many"), 2, "--count: invalid int value"),
        (("--every", "1h", "--from", "yesterday"), 64, "--from: invalid time 'yesterday'"),
        (("--every", "1h", "--from", "9999-12-31T23:00"), 64, "beyond the years 1 to 9999"),
        (("--cron", "0 0 * * *", "--from", "9999-12-31"), 64, "beyond the years 1 to 9999"),
    ],
)
def test_preview_refuses(sqlite_workdir, cli, args, code, says):
    refused(cli("schedules", "preview", *args), code, says)


# --- runs NAME: the ledger ------------------------------------------------------------------


def test_runs_lists_the_ledger_newest_first(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    assert ok(cli("runs", "nightly")).strip() == "no runs of nightly yet"
    assert cli("runs", "nightly", "--json").json() == []
    with opened(db_url) as store:
        row = store.schedule("nightly")
        assert row is not None
        fire = utc(2026, 3, 29, 1, 30)
        run = store.claim_fire(row.id, fire, "cron", "test", 30, "skip", now=fire)
        assert run is not None
        store.finish_run(run.id, "test", "failed", error="boom", now=fire + timedelta(seconds=5))
    ok(cli("schedules", "run", "nightly"))
    lines = ok(cli("runs", "nightly")).splitlines()
    assert len(lines) == 2
    # in the file's zone (Asia/Jakarta), labelled, as every time the CLI prints
    assert lines[0].endswith(" WIB manual attempt 1: queued — run now")
    assert lines[1] == f"  #{run.id} 2026-03-29 08:30:00 WIB cron attempt 1: failed in 5s — boom"
    newest, oldest = cli("runs", "nightly", "--json").json()
    assert set(newest) == set(oldest) == RUN_FIELDS
    assert newest["trigger"] == "manual" and newest["status"] == "queued"
    assert newest["started_at"] is None and newest["finished_at"] is None
    assert oldest == {
        "id": run.id,
        "schedule": "nightly",
        "fire_time": "2026-03-29T01:30:00+00:00",
        "attempt": 1,
        "trigger": "cron",
        "status": "failed",
        "started_at": "2026-03-29T01:30:00+00:00",
        "finished_at": "2026-03-29T01:30:05+00:00",
        "error": "boom",
        "output": None,
        "note": None,
        "retry_of": None,
        "cancel_requested": None,
    }
    assert [r["id"] for r in cli("runs", "nightly", "--json", "--limit", "1").json()] == [
        newest["id"]
    ]
    shown = cli("schedules", "show", "nightly", "--json").json()
    assert [r["id"] for r in shown["runs"]] == [newest["id"], run.id]
    assert lines[1] in ok(cli("schedules", "show", "nightly")).splitlines()
    # --status, as GET …/runs?status= takes it: again or comma-separated
    assert [r["id"] for r in cli("runs", "nightly", "--status", "failed", "--json").json()] == [
        run.id
    ]
    both = cli("runs", "nightly", "--status", "queued,running", "--status", "failed", "--json")
    assert [r["id"] for r in both.json()] == [newest["id"], run.id]
    assert cli("runs", "nightly", "--status", "succeeded", "--json").json() == []


def test_list_shows_the_newest_run_as_the_last(workdir, db_url, cli):
    start_scheduler(workdir, db_url)
    with opened(db_url) as store:
        row = store.schedule("nightly")
        assert row is not None
        fire = utc(2026, 3, 29, 1, 30)
        run = store.claim_fire(row.id, fire, "cron", "test", 30, "skip", now=fire)
        assert run is not None
        store.finish_run(run.id, "test", "succeeded", now=fire + timedelta(seconds=1))
    assert cli("schedules", "list", "--json").json()[0]["last_run"] == {
        "status": "succeeded",
        "fire_time": "2026-03-29T01:30:00+00:00",
    }
    ok(cli("schedules", "run", "nightly"))
    [item] = cli("schedules", "list", "--json").json()
    assert item["last_run"]["status"] == "queued"  # the run just asked for, not the first
    assert ok(cli("schedules", "list")).strip().endswith("last run queued [file]")


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "99999999999999999999"])
def test_runs_refuses_a_limit_out_of_range(workdir, db_url, cli, limit):
    start_scheduler(workdir, db_url)
    ok(cli("schedules", "run", "nightly"))
    refused(cli("runs", "nightly", "--limit", limit), 64, "--limit: 1 to 10,000")


def test_runs_of_an_unknown_schedule(workdir, cli):
    refused(cli("runs", "ghost"), 65, "no schedule named 'ghost'")
    refused(cli("runs", "ghost", "--json"), 65, "no schedule named 'ghost'")


# --- the command line, the config, the database ------------------------------------------


def test_schedules_needs_an_action(sqlite_workdir, cli):
    refused(cli("schedules"), 2, "the following arguments are required: ACTION")
    refused(cli("schedules", "frobnicate"), 2, "invalid choice: 'frobnicate'")


def test_a_config_whose_schedule_is_not_valid_exits_78(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outboxd.yaml").write_text(
        CONFIG.format(url=f"sqlite:///{tmp_path}/o.db").replace("30 2 * * *", "30 25 * * *")
    )
    for args in (("schedules", "list"), ("schedules", "preview", "--every", "1h"), ("runs", "x")):
        result = cli(*args)
        assert result.code == 78, result.err
        assert "schedules.nightly" in result.err and "invalid cron expression" in result.err


def test_a_database_not_migrated_exits_78_and_is_not_created(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url="sqlite:///fresh.db"))
    for args in (("schedules", "list"), ("schedules", "run", "nightly"), ("runs", "nightly")):
        refused(cli(*args), 78, "no database at fresh.db")
    assert not (tmp_path / "fresh.db").exists()
    assert ok(cli("schedules", "preview", *BERLIN, "--count", "1"))  # needs no database


@pytest.mark.slow  # four processes
def test_as_real_processes(workdir, db_url):
    """The same commands as a user's shell runs them."""
    env = {k: v for k, v in os.environ.items() if k != "OUTBOXD_CONFIG"}

    def outboxd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", *args, *C],
            cwd=workdir,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": str(ROOT), "USER": "bob"},
            timeout=60,
        )

    added = outboxd("schedules", "add", "hook", *HOOK, "--every", "1h")
    assert added.returncode == 0 and added.stdout.strip() == "schedule hook added (every 1h)"
    paused = outboxd("schedules", "pause", "hook", "--note", "partner down")
    assert paused.returncode == 0, paused.stderr
    items = {i["name"]: i for i in json.loads(outboxd("schedules", "list", "--json").stdout)}
    assert items["hook"]["state"] == "paused by cli:bob: partner down"
    missing = outboxd("runs", "ghost")
    assert missing.returncode == 65
    assert missing.stderr == "outboxd: no schedule named 'ghost'\n"
