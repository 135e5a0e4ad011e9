"""The ``outboxd`` command as a user runs it, on a real database: in this process
(``daemon.cli.main``, the ``cli`` fixture), and as a real process where the process
is the point (the console script, what it imports, its CPU, an exit code)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.data import hl7_samples

ROOT = Path(__file__).resolve().parents[2]
HL7 = (ROOT / "config" / "demo" / "adt-a04.hl7").read_bytes()


def hl7(control_id: str) -> bytes:
    return HL7.replace(b"DEMO-0001", control_id.encode())


CONFIG = """
database: {url}
timezone: Asia/Jakarta
channels:
  hie:
    kind: mllp
    host: 127.0.0.1
    port: 2575
    rate: 1/s
  webhook:
    kind: http
    url: http://127.0.0.1:8081/hook
"""


def process(*args: str, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None):
    """``python -m daemon ARGS`` as a real process."""
    environ = {k: v for k, v in os.environ.items() if k != "OUTBOXD_CONFIG"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


@pytest.fixture
def workdir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=db_url))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_ok(cli: Cli, *args: str, stdin: bytes = b"") -> str:
    result = cli(*args, "-c", "outboxd.yaml", stdin=stdin)
    assert result.code == 0, result.err
    return result.out


def test_check_config_summarises(cli: Cli, workdir: Path):
    out = run_ok(cli, "check-config")
    assert "outboxd.yaml: OK" in out
    assert "hie: mllp → 127.0.0.1:2575, rate 1/s" in out
    assert "timezone: Asia/Jakarta" in out


@pytest.mark.slow  # a real process: the exit code and the streams as a shell sees them
def test_check_config_reports_every_error_with_exit_78(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text(
        "database: sqlite:///x.db\n"
        "channels:\n"
        "  malaffi: {kind: mllp, host: h, port: 2575, rate: 1/s, rte: 2}\n"
        "  hook: {kind: http, url: '${HOOK_URL:?set HOOK_URL}', timeout: forever}\n"
    )
    result = process("check-config", "-c", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 78
    err = result.stderr.decode()
    assert "channels.malaffi.rte: unknown key (did you mean 'rate'?)" in err
    assert "channels.hook.url: environment variable HOOK_URL: set HOOK_URL" in err
    assert "channels.hook.timeout: invalid duration 'forever'" in err
    assert "Traceback" not in err
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("database: [oops\n", "invalid YAML: line 2"),
        ("database: sqlite:///x.db\nwat: 1\n", "wat: unknown key"),
        ("database: sqlite:///x.db\ntimezone: 7\n", "timezone: Input should be a valid string"),
    ],
)
def test_bad_configs_exit_78(cli: Cli, tmp_path: Path, text: str, expected: str):
    (tmp_path / "bad.yaml").write_text(text)
    result = cli("stats", "-c", "bad.yaml", cwd=tmp_path)
    assert result.code == 78
    assert expected in result.err


def test_config_from_environment_and_missing_config(cli: Cli, tmp_path: Path):
    (tmp_path / "o.yaml").write_text("database: sqlite:///x.db\n")
    ok = cli("check-config", cwd=tmp_path, env={"OUTBOXD_CONFIG": "o.yaml"})
    assert ok.code == 0
    missing = cli("check-config", cwd=tmp_path)
    assert missing.code == 78
    assert "no config file: pass -c FILE or set OUTBOXD_CONFIG" in missing.err
    absent = cli("check-config", "-c", "absent.yaml", cwd=tmp_path)
    assert absent.code == 78 and "cannot read" in absent.err


def test_commands_refuse_an_unmigrated_database(cli: Cli, tmp_path: Path):
    (tmp_path / "o.yaml").write_text("database: sqlite:///fresh.db\n")
    result = cli("stats", "-c", "o.yaml", cwd=tmp_path)
    assert result.code == 78
    assert "no database at fresh.db (`outboxd migrate` creates it" in result.err
    assert not (tmp_path / "fresh.db").exists()  # a command that reads creates nothing
    (tmp_path / "fresh.db").touch()  # an empty file: a database with no schema yet
    result = cli("stats", "-c", "o.yaml", cwd=tmp_path)
    assert result.code == 78
    assert "schema is at version 0" in result.err
    assert "run `outboxd migrate`" in result.err
    first = cli("migrate", "-c", "o.yaml", cwd=tmp_path)
    assert first.code == 0 and "upgraded from version 0" in first.out
    again = cli("migrate", "-c", "o.yaml", cwd=tmp_path)
    assert again.code == 0 and "up to date" in again.out


def test_enqueue_from_file_and_stdin_and_duplicates(cli: Cli, workdir: Path):
    (workdir / "msg.hl7").write_bytes(hl7("C1"))
    first = json.loads(
        run_ok(cli, "enqueue", "--channel", "hie", "--key", "k1", "msg.hl7", "--json")
    )
    assert first == {"id": first["id"], "created": True, "status": "pending"}
    again = run_ok(cli, "enqueue", "--channel", "hie", "--key", "k1", "-", stdin=hl7("C9"))
    assert again.strip() == f"{first['id']} exists (status pending); not enqueued again"
    second = run_ok(
        cli, "enqueue", "--channel", "hie", "--key", "k2", "--after", "k1", stdin=hl7("C2")
    )
    assert second.strip().endswith(" new")
    stats = json.loads(run_ok(cli, "stats", "--json"))
    hie = next(c for c in stats["channels"] if c["channel"] == "hie")
    assert hie["counts"]["pending"] == 2
    webhook = next(c for c in stats["channels"] if c["channel"] == "webhook")
    assert webhook["counts"]["pending"] == 0


def test_every_sample_message_is_accepted(cli: Cli, workdir: Path):
    samples = hl7_samples()
    for i, sample in enumerate(samples):
        out = run_ok(cli, "enqueue", "--channel", "hie", "--key", f"s{i}", str(sample))
        assert out.strip().endswith(" new")
    stats = json.loads(run_ok(cli, "stats", "--json"))
    hie = next(c for c in stats["channels"] if c["channel"] == "hie")
    assert hie["counts"]["pending"] == len(samples)


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (
            ["--channel", "nope", "--key", "k"],
            b"x",
            64,
            "unknown channel 'nope' (channels: hie, webhook)",
        ),
        (["--channel", "hie", "--key", "k"], b"  \n", 65, "the payload is empty"),
        (["--channel", "hie", "--key", "k", "--after", "ghost"], HL7, 65, "prerequisite 'ghost'"),
        (
            ["--channel", "hie", "--key", "k"],
            b"PID|1||MRN\r",
            65,
            "not a valid HL7 v2 message: ",
        ),
        (
            ["--channel", "hie", "--key", "k"],
            HL7.replace(b"|DEMO-0001|", b"||"),
            65,
            "not a valid HL7 v2 message: ",
        ),
        (["--channel", "webhook", "--key", "k"], b"{not json", 65, "not valid JSON: "),
        (
            ["--channel", "hie", "--key", "k", "missing.hl7"],
            None,
            66,
            "cannot read payload missing.hl7",
        ),
        (["--channel", "hie", "--key", "k" * 300], HL7, 65, "key is longer than 255"),
    ],
)
def test_enqueue_errors(cli: Cli, workdir: Path, args, stdin, code, message):
    result = cli("enqueue", *args, "-c", "outboxd.yaml", cwd=workdir, stdin=stdin)
    assert result.code == code
    err = result.err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_retry_and_cancel(cli: Cli, workdir: Path):
    for key in ("a", "b", "c"):
        run_ok(cli, "enqueue", "--channel", "hie", "--key", key, stdin=hl7(key))
    out = run_ok(cli, "cancel", "--channel", "hie")
    assert out.startswith("cancelled 3 message(s)")
    out = run_ok(cli, "retry", "--id", "1,2", "--id", "3")
    assert out.startswith("retried 3 message(s)")
    out = run_ok(cli, "cancel", "--channel", "hie", "--status", "pending", "--since", "1h")
    assert out.startswith("cancelled 3 message(s)")
    missing = cli("retry", "--id", "1,99", "-c", "outboxd.yaml", cwd=workdir)
    assert missing.code == 65
    assert "retried 1 message(s)" in missing.out
    assert "not found: 99" in missing.err
    none = cli("retry", "-c", "outboxd.yaml", cwd=workdir)
    assert none.code == 64 and "select messages with --id" in none.err
    bad_time = cli("retry", "--since", "yesterday", "-c", "outboxd.yaml", cwd=workdir)
    assert bad_time.code == 64 and "invalid time 'yesterday'" in bad_time.err


def test_stats_table(cli: Cli, workdir: Path):
    run_ok(cli, "enqueue", "--channel", "hie", "--key", "a", stdin=HL7)
    lines = run_ok(cli, "stats").splitlines()
    assert lines[0].split()[:4] == ["channel", "pending", "sending", "sent"]
    assert lines[1].split()[:2] == ["hie", "1"]
    assert lines[2].split()[:2] == ["webhook", "0"]


def test_run_names_only_the_roles_there_are(cli: Cli, workdir: Path):
    result = cli("run", "nosuch", "-c", "outboxd.yaml", cwd=workdir)
    assert result.code == 2
    choices = "(choose from 'dispatcher', 'poller', 'scheduler', 'control')"
    assert f"invalid choice: 'nosuch' {choices}" in result.err


def test_unreachable_database_is_one_line(cli: Cli, tmp_path: Path):
    (tmp_path / "o.yaml").write_text(
        "database: postgresql://postgres@127.0.0.1:1/x?connect_timeout=1\n"
    )
    result = cli("stats", "-c", "o.yaml", cwd=tmp_path)
    assert result.code == 69
    err = result.err
    assert err.startswith("outboxd: ") and "Traceback" not in err


@pytest.mark.slow  # the installed console script, as a real process
def test_console_script_matches_module(workdir: Path):
    script = shutil.which("outboxd", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the outboxd console script is not installed in this environment")
    result = subprocess.run(
        [script, "check-config", "-c", "outboxd.yaml"], cwd=workdir, capture_output=True, timeout=60
    )
    assert result.returncode == 0
    module = process("check-config", "-c", "outboxd.yaml", cwd=workdir)
    assert module.returncode == 0
    assert result.stdout == module.stdout


def test_visit_shows_task_progress(cli: Cli, workdir: Path, db_url: str):
    from daemon.config.database import DatabaseSettings
    from daemon.store.db import open_database
    from daemon.store.sync import Store

    store = Store(open_database(DatabaseSettings(url=db_url)))
    store.sync_visits(
        "khanza",
        {
            "KB-1": {
                "add": {"status": "sent", "sent_at": "2026-11-23T01:00:00+00:00"},
                "3": {
                    "status": "sent",
                    "sent_at": "2026-11-23T01:05:00+00:00",
                    "waktu": 1795395900000,
                },
                "4": {
                    "status": "held",
                    "reason": "task 4 at 08:01 is earlier than task 3 at 08:05",
                },
            }
        },
        [],
    )
    store.close()
    lines = run_ok(cli, "visit", "KB-1").splitlines()
    assert lines[0].startswith("kodebooking KB-1 (source khanza)")
    assert lines[1].split()[:2] == ["add", "sent"]
    assert "task 3" in lines[2] and "waktu 08:05:00" in lines[2]  # Asia/Jakarta
    assert "held" in lines[3] and "earlier than task 3" in lines[3]
    data = json.loads(run_ok(cli, "visit", "KB-1", "--json"))
    assert data["task_progress"]["3"]["waktu"] == 1795395900000
    missing = cli("visit", "KB-404", "-c", "outboxd.yaml", cwd=workdir)
    assert missing.code == 65 and "no visit with kodebooking 'KB-404'" in missing.err


HEAVY = ("pydantic", "yaml", "peewee", "aiohttp", "psycopg", "apscheduler")


@pytest.mark.slow  # what a fresh interpreter imports: a real process
@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--help"], 0),
        (["enqueue", "--help"], 0),
        (["retry", "--bogus"], 2),
        (["messages", "list", "--status", "failed,lost"], 2),
    ],
)
def test_the_command_line_is_read_before_anything_heavy_is_loaded(tmp_path: Path, args, code):
    """``outboxd --help`` and a mistyped command line load no settings model, YAML
    reader, database driver or web framework: what Python imports, from its own
    account (``-X importtime``)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "daemon", *args],
        cwd=tmp_path, capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == code, result.stderr.decode()[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "daemon" in imported  # the account is there
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.slow  # a real process, twice
def test_a_batch_of_2000_hl7_messages_is_stored_whole_and_once(workdir: Path):
    """``outboxd enqueue --batch``: 2,000 HL7 messages in one call, stored in
    transactions of 500; the same file again finds every one a duplicate. (Its CPU
    is a figure of ``ops/bench/startup.py``, not asserted here.)"""
    samples = hl7_samples()
    texts = [p.read_bytes().decode("utf-8") for p in samples]
    lines = [
        json.dumps({"channel": "hie", "key": f"b{i:05}", "payload": texts[i % len(texts)]})
        for i in range(2000)
    ]
    (workdir / "batch.jsonl").write_text("\n".join(lines) + "\n")
    result = process("enqueue", "--batch", "batch.jsonl", "-c", "outboxd.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "2000 new, 0 duplicate(s), 0 refused"
    again = process("enqueue", "--batch", "batch.jsonl", "-c", "outboxd.yaml", cwd=workdir)
    assert again.returncode == 0, again.stderr.decode()
    assert again.stdout.decode().strip() == "0 new, 2000 duplicate(s), 0 refused"
