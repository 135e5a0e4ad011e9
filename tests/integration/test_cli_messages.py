"""``outboxd messages list | show``, ``resend`` and ``--dry-run``, and the
selections the operator commands refuse, run in this process through
``daemon.cli.main`` (the ``cli`` fixture) on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.cli.common import actor
from daemon.domain.messages import Delivered, Failed
from daemon.store.models import AuditEntry, Message
from daemon.store.sync import Store
from tests.integration.test_cli import CONFIG, hl7
from tests.support.cli import Cli


@pytest.fixture
def workdir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=db_url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUTBOXD_CONFIG", raising=False)
    monkeypatch.delenv("OUTBOXD_DEBUG", raising=False)
    return tmp_path


@pytest.fixture
def outboxd(cli: Cli):
    """``outboxd ARGS -c outboxd.yaml`` in this process: (exit code, stdout, stderr)."""

    def run(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        result = cli(*args, "-c", "outboxd.yaml", stdin=stdin)
        return result.code, result.out, result.err

    return run


@pytest.fixture
def run_ok(outboxd):
    def run(_workdir: Path, *args: str, stdin: bytes = b"") -> str:
        code, out, err = outboxd(*args, stdin=stdin)
        assert code == 0, err
        return out

    return run


@pytest.fixture
def fails(outboxd):
    def run(_workdir: Path, args: list[str], code: int, text: str) -> str:
        got, out, err = outboxd(*args)
        assert got == code, err
        assert text in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return out

    return run


@pytest.fixture
def enqueue(run_ok):
    def run(workdir: Path, key: str, channel: str = "hie") -> int:
        body = hl7(key) if channel == "hie" else json.dumps({"key": key}).encode()
        out = run_ok(workdir, "enqueue", "--channel", channel, "--key", key, "--json", stdin=body)
        return json.loads(out)["id"]

    return run


def test_list_pages_with_a_cursor_and_as_json(workdir: Path, enqueue, run_ok):
    made = [enqueue(workdir, f"visit-{i}") for i in range(5)]
    other = enqueue(workdir, "order-1", channel="webhook")
    lines = run_ok(workdir, "messages", "list", "--limit", "2").splitlines()
    assert lines[0].split() == [
        "id", "channel", "kind", "key", "status", "attempts", "created", "updated"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:3]] == [str(other), str(made[4])]
    assert "the last 7d" in lines[3]
    cursor = lines[4].removeprefix("next: --cursor ")
    rest = json.loads(run_ok(workdir, "messages", "list", "--cursor", cursor, "--json"))
    assert [m["id"] for m in rest["items"]] == made[3::-1] and rest["next"] is None
    assert rest["items"][0]["key"] == "visit-3" and rest["items"][0]["status"] == "pending"
    listed = json.loads(
        run_ok(workdir, "messages", "list", "--channel", "hie", "--key", "visit-1", "--json")
    )
    assert [m["id"] for m in listed["items"]] == [made[1]]
    out = run_ok(workdir, "messages", "list", "--status", "sent", "--status", "failed")
    assert out.splitlines()[0] == "no messages" and "next: none" in out


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--limit", "0"], "--limit: '0' is not a number from 1 to 500"),
        (["--limit", "many"], "--limit: 'many' is not a number"),
        (["--cursor", "xyz"], "not a listing cursor"),
        (["--channel", "nosuch"], "unknown channel 'nosuch' (channels: hie, webhook)"),
        (["--key", "visit"], "a key prefix needs its channel"),
        (["--since", "soon"], "--since: invalid time 'soon'"),
    ],
)
def test_list_refuses_bad_arguments_with_64(workdir: Path, fails, args: list[str], text: str):
    fails(workdir, ["messages", "list", *args], 64, text)


def test_show_a_message_and_its_timeline(workdir: Path, store: Store, enqueue, run_ok, fails):
    m = enqueue(workdir, "a")
    store.claim(["hie"], "w1", 1, 60)
    store.record("w1", [Failed(m, "AR: unknown patient", response="MSA|AR")])
    run_ok(workdir, "retry", "--id", str(m))
    lines = run_ok(workdir, "messages", "show", str(m)).splitlines()
    assert lines[0] == f"message {m}: channel hie, kind hl7, key a"
    assert "  status:       pending" in lines
    text = "\n".join(lines)
    assert "attempt 1 failed for good: AR: unknown patient" in text
    assert f"retried by {actor()}: now pending (audit 1)" in text
    assert "retry by cli:" in text and f"messages {m}, 1 changed" in text
    # the payload one segment a line, the peer's answer likewise
    at = lines.index("payload:")
    assert lines[at + 1].startswith("  MSH|^~\\&|") and lines[at + 2].startswith("  EVN|")
    assert lines[lines.index("peer's answer:") + 1] == "  MSA|AR"
    by_field = run_ok(workdir, "messages", "show", str(m), "--fields").splitlines()
    assert "      PID-3    MRN-1001^^^CLINIC^MR" in by_field
    data = json.loads(run_ok(workdir, "messages", "show", str(m), "--json"))
    assert data["payload"].startswith("MSH|") and data["response"] == "MSA|AR"
    assert [e["to"] for e in data["events"]] == ["pending", "sending", "failed", "pending"]
    assert [a["action"] for a in data["actions"]] == ["retry"]
    fails(workdir, ["messages", "show", "424242"], 65, "no message with id 424242")
    fails(workdir, ["messages", "show", "x1"], 64, "ID: 'x1' is not a message id")


def test_resend_and_dry_runs(workdir: Path, store: Store, enqueue, run_ok, fails):
    a, b = enqueue(workdir, "a"), enqueue(workdir, "b")
    store.claim(["hie"], "w", 2, 60)
    store.record("w", [Delivered(a, "MSA|AA"), Delivered(b, "MSA|AA")])
    out = run_ok(workdir, "resend", "--channel", "hie", "--status", "sent", "--dry-run")
    assert out.splitlines()[:2] == [
        "would resend 2 message(s) (dry run: nothing changed)",
        f"ids: {a}, {b}",
    ]
    assert {m.status for m in Message.select()} == {"sent"}
    assert AuditEntry.select().count() == 0
    out = run_ok(workdir, "resend", "--id", str(a))
    assert out.splitlines() == ["resent 1 message(s)", f"ids: {a}"]
    assert Message.get_by_id(a).status == "pending" and Message.get_by_id(a).attempts == 0
    out = run_ok(workdir, "cancel", "--id", f"{a},{b}", "--dry-run")
    assert out.splitlines() == [
        "would cancel 1 message(s) (dry run: nothing changed)",
        f"ids: {a}",
        "left as they are: 1 sent",
    ]
    store.claim(["hie"], "w", 1, 600)  # a is being sent
    out = run_ok(workdir, "retry", "--id", str(a))
    assert out.splitlines() == ["retried 0 message(s)", "left as they are: 1 being sent"]
    fails(workdir, ["resend", "--channel", "hie"], 64, "resend by a filter needs the statuses")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            ["retry", "--channel", "nosuch"],
            "unknown channel 'nosuch' (channels: hie, webhook)",
        ),
        (
            ["cancel", "--channel", "nosuch", "--dry-run"],
            "unknown channel 'nosuch' (channels: hie, webhook)",
        ),
        (
            ["retry", "--id", "1", "--channel", "hie"],
            "--id selects messages by id: it cannot go with --channel",
        ),
        (
            ["cancel", "--id", "1", "--status", "pending"],
            "--id selects messages by id: it cannot go with --status",
        ),
        (
            ["retry", "--status", "sent"],
            "retry does not take sent messages (it takes failed, cancelled, pending): "
            "send it again with resend",
        ),
        (["resend", "--status", "failed"], "it was not sent; use retry"),
        (["resend"], "select messages with --id, or --channel"),
    ],
)
def test_operator_commands_refuse_what_they_cannot_do(
    workdir: Path, enqueue, run_ok, fails, args: list[str], text: str
):
    m = enqueue(workdir, "a")
    stdout = fails(workdir, args, 64, text)
    assert stdout == ""
    shown = json.loads(run_ok(workdir, "messages", "show", str(m), "--json"))
    assert shown["status"] == "pending" and len(shown["events"]) == 1


def test_list_finds_messages_by_what_they_say(workdir: Path, run_ok, fails, outboxd):
    def stored(key: str, mrn: str) -> int:
        body = hl7(key).replace(b"MRN-1001", mrn.encode())
        out = run_ok(workdir, "enqueue", "--channel", "hie", "--key", key, "--json", stdin=body)
        return json.loads(out)["id"]

    a, b, c = stored("k-a", "RM-77"), stored("k-b", "RM-78"), stored("k-c", "RM-77")

    def listed(*args: str) -> list[int]:
        out = run_ok(workdir, "messages", "list", *args, "--json")
        return [m["id"] for m in json.loads(out)["items"]]

    assert listed("--mrn", "RM-77") == [c, a]
    assert listed("--control-id", "k-b") == [b]
    assert listed("--message-type", "ADT^A04", "--limit", "2") == [c, b]
    assert listed("--q", "rm-78") == [b]
    assert listed("--q", "Santoso^Budi", "--mrn", "RM-77") == [c, a]
    out = run_ok(workdir, "messages", "list", "--mrn", "RM-77")
    assert "searched: every message stored" in out
    fails(workdir, ["messages", "list", "--q", "ab"], 64, "q: 'ab' is shorter than 3")
    out = run_ok(workdir, "cancel", "--mrn", "RM-77", "--dry-run")
    assert "would cancel 2 message(s)" in out and f"ids: {a}, {c}" in out


def test_every_time_shown_carries_the_configured_zone(workdir: Path, store: Store, enqueue, run_ok):
    """The file's timezone is Asia/Jakarta: each time a command prints for a person
    is in it, with its label (WIB); the JSON's machine fields stay ISO UTC."""
    import re

    first = enqueue(workdir, "zone-1")
    store.claim(["hie"], "w", 1, 60)
    store.record("w", [Failed(first, "127.0.0.1:2575 answered AR: no")])
    run_ok(workdir, "retry", "--id", str(first))
    outputs = [
        run_ok(workdir, "messages", "list"),
        run_ok(workdir, "messages", "show", str(first)),
        run_ok(workdir, "messages", "list", "--q", "zone-1"),
    ]
    times = re.compile(r"\d\d:\d\d:\d\d(?!\.)(\s\S+)?")
    for out in outputs:
        found = times.findall(out)
        assert found, out
        assert all(label.strip() == "WIB" for label in found), out
    shown = json.loads(run_ok(workdir, "messages", "show", str(first), "--json"))
    assert shown["created_at"].endswith("+00:00")
    assert all(e["at_text"].endswith(" WIB") for e in shown["events"])
    assert shown["events"][2]["text"] == "attempt 1 failed for good: 127.0.0.1:2575 answered AR: no"
