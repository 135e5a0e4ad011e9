"""The ``outboxd`` command against hostile and careless input: every run ends in an
exit code of the README's table and at most a few lines on stderr, never a
traceback or an internal error (70), and nothing is created where nothing should
be. A table of the cases found by hand and a fuzz of argument lists, run in this
process (the ``cli`` fixture); ``outboxd run`` as a real process, which is what it
starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config.database import DatabaseSettings
from daemon.store.db import open_database
from daemon.store.migrations import migrate
from tests.integration.test_cli import CONFIG, HL7, ROOT

EXIT_CODES = {0, 2, 64, 65, 66, 69, 78}  # the README's table, but 70


def process(workdir: Path, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """``python -m daemon ARGS`` as a real process (``outboxd run`` starts a worker)."""
    env = {k: v for k, v in os.environ.items() if k != "OUTBOXD_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=workdir,
        capture_output=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path}/outbox.db"
    (tmp_path / "outboxd.yaml").write_text(CONFIG.format(url=url))
    db = open_database(DatabaseSettings(url=url))
    migrate(db)
    db.close()  # the last connection: the whole database is in the file, not in its WAL
    (tmp_path / "visit.hl7").write_bytes(HL7)
    (tmp_path / "event.json").write_bytes(b'{"a": 1}')
    (tmp_path / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    return tmp_path


C = ("-c", "outboxd.yaml")
NOT_UTF8 = os.fsencode("k\udcff")  # a byte 0xff: what a shell may pass


def enq(*args: str | bytes, payload: str = "event.json") -> tuple[str | bytes, ...]:
    return ("enqueue", *C, "--channel", "webhook", *args, payload)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("retry", *C, "--id", "abc"), 64, "--id: 'abc' is not a message id"),
        (("retry", *C, "--id", "1,2,x"), 64, "--id: 'x' is not a message id"),
        (("cancel", *C, "--id", "1.5"), 64, "--id: '1.5' is not a message id"),
        (("cancel", *C, "--id", "99999999999999999999999"), 64, "is not a message id"),
        (("retry", *C, "--id", "0"), 64, "is not a message id"),
        (("retry", *C, "--since", "99999999999w"), 64, "--since: invalid time"),
        (("retry", *C, "--since", "9999-12-31T23:59:59-14:00"), 64, "--since: invalid time"),
        (("cancel", *C, "--until", "0001-01-01T00:00+14:00"), 64, "--until: invalid time"),
        (("stats", *C, "--window", "bogus"), 64, "--window: invalid duration 'bogus'"),
        (("stats", *C, "--window=-1h"), 64, "--window: invalid duration '-1h'"),
        (("stats", *C, "--window", "99999999999w"), 64, "longer than a century"),
        (("stats", *C, "--window", "0s"), 64, "no time at all"),
        (enq("--key", NOT_UTF8), 65, "--key"),
        (enq("--key", "k", "--after", NOT_UTF8), 65, "--after"),
        (enq("--key", "k", "--group", NOT_UTF8), 65, "--group"),
        (enq("--key", "k", "--kind", NOT_UTF8), 65, "--kind"),
        (("visit", *C, NOT_UTF8), 65, "kodebooking: not valid UTF-8"),
        (enq("--key", "k", payload="deep.json"), 65, "nested too deeply"),
        (enq("--key", "a\nb"), 65, "cannot be shown"),
        (enq("--key", "\x1b[2J"), 65, "cannot be shown"),
        (enq("--key", " "), 65, "begins or ends with a space"),
        (enq("--key", "k", "--after", ""), 65, "after_key must be"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_one_line_and_its_exit_code(workdir, cli, args, code, says):
    result = cli(*args, cwd=workdir)
    assert result.code == code, result.err
    assert says in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.slow  # ``outboxd run`` as supervisord starts it: a process and its worker
@pytest.mark.parametrize("num", ["99999", "-1"])
def test_run_refuses_a_process_number_in_one_line(workdir, num):
    result = process(workdir, "run", "dispatcher", *C, "--process-num", num)
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, err
    assert "--process-num" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # ``outboxd run``: a real process
def test_a_process_number_whose_port_is_not_one_is_refused(workdir):
    text = (workdir / "outboxd.yaml").read_text() + "roles:\n  dispatcher: {base_port: 65535}\n"
    (workdir / "outboxd.yaml").write_text(text)
    result = process(workdir, "run", "dispatcher", *C, "--process-num", "1")
    assert result.returncode == 64
    assert "65535 + 1 is not a port" in result.stderr.decode()


# --- the database file ---------------------------------------------------------------


def point_at(workdir: Path, path: str) -> None:
    (workdir / "outboxd.yaml").write_text(CONFIG.format(url=f"sqlite:///{path}"))


def corrupt(workdir: Path) -> str:
    """A database whose header is right and whose pages are not."""
    source = workdir / "outbox.db"
    data = bytearray(source.read_bytes())
    data[100:] = b"\x5a" * (len(data) - 100)
    (workdir / "corrupt.db").write_bytes(bytes(data))
    return "corrupt.db"


def truncated(workdir: Path) -> str:
    data = (workdir / "outbox.db").read_bytes()
    (workdir / "truncated.db").write_bytes(data[: len(data) // 3])
    return "truncated.db"


def not_sqlite(workdir: Path) -> str:
    (workdir / "notes.db").write_text("these are notes, not a database\n")
    return "notes.db"


def directory(workdir: Path) -> str:
    (workdir / "adir.db").mkdir()
    return "adir.db"


def under_a_file(workdir: Path) -> str:
    (workdir / "afile").write_text("x")
    return "afile/outbox.db"


def missing(workdir: Path) -> str:
    return "typo/outboxd.db"


COMMANDS = [
    ("stats",),
    ("visit", "KB1"),
    ("retry", "--channel", "hie", "--status", "failed"),
    ("enqueue", "--channel", "webhook", "--key", "k1", "event.json"),
    ("backup", "copy.db"),
]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (corrupt, "is damaged or not a database"),
        (truncated, "is damaged or not a database"),
        (not_sqlite, "notes.db is not an SQLite database"),
        (directory, "adir.db is a directory, not a database file"),
        (under_a_file, "afile is not a directory"),
        (missing, "no database at typo/outboxd.db"),
        (lambda _: "/proc/version", "/proc/version is not an SQLite database"),
    ],
    ids=["corrupt", "truncated", "not-sqlite", "directory", "under-a-file", "missing", "proc"],
)
@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_database_file_outboxd_cannot_use_is_named_with_exit_78(
    workdir, cli, make, says, command
):
    path = make(workdir)
    point_at(workdir, path)
    before = sorted(p.name for p in workdir.rglob("*"))
    result = cli(*command, *C, cwd=workdir)
    err = result.err
    assert result.code == 78, err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in workdir.rglob("*")) == before  # nothing created, nothing moved


@pytest.mark.parametrize("make", [corrupt, not_sqlite, directory, under_a_file])
def test_migrate_refuses_what_is_not_a_database_and_creates_what_is_missing(workdir, cli, make):
    point_at(workdir, make(workdir))
    result = cli("migrate", *C, cwd=workdir)
    assert result.code == 78, result.err
    point_at(workdir, "new/dir/outbox.db")
    assert cli("migrate", *C, cwd=workdir).code == 0
    assert (workdir / "new" / "dir" / "outbox.db").is_file()


@pytest.mark.slow  # ``outboxd run``: a real process
def test_a_dispatcher_on_a_damaged_database_says_so_in_one_line(workdir):
    point_at(workdir, corrupt(workdir))
    result = process(workdir, "run", "dispatcher", *C)
    err = result.stderr.decode()
    assert result.returncode == 78, err
    assert "Traceback" not in err and "is damaged or not a database" in err
    assert len(err.strip().splitlines()) <= 3, err


# --- a fuzz of argument lists -----------------------------------------------------------

VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1",
            "9" * 30,
            "1.5",
            "1,2,x",
            "hie",
            "webhook",
            "nosuch",
            "sent",
            "failed",
            "2h",
            "-1h",
            "99999999999w",
            "0s",
            ".inf",
            "2026-11-23T08:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00+14:00",
            "k\udcff",
            "\x1b[31m",
            "a\nb",
            "bpjs.add",
            "visit.hl7",
            "event.json",
            "deep.json",
            "missing.file",
            ".",
            "--json",
        ]
    ),
    st.text(max_size=12),
)
OPTIONS = st.sampled_from(
    [
        "--id",
        "--channel",
        "--status",
        "--since",
        "--until",
        "--window",
        "--key",
        "--after",
        "--group",
        "--kind",
        "--json",
        "--source",
        "--process-num",
        "--dry-run",
        "--limit",
        "--cursor",
    ]
)
COMMAND_NAMES = st.sampled_from(
    [
        "check-config",
        "migrate",
        "enqueue",
        "stats",
        "retry",
        "cancel",
        "resend",
        "messages list",
        "messages show",
        "visit",
        "bogus",
    ]
)


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    command = draw(COMMAND_NAMES)
    tokens = [*command.split(), "-c", "outboxd.yaml"]
    for _ in range(draw(st.integers(0, 6))):
        tokens.append(draw(OPTIONS))
        if draw(st.booleans()):
            tokens.append(draw(VALUES))
    if command == "enqueue":  # never stdin: a payload file, good or bad
        tokens.append(draw(st.sampled_from(["visit.hl7", "event.json", "deep.json", "nope", "."])))
    elif command in ("visit", "messages show"):
        tokens.append(draw(VALUES))
    return tokens


@pytest.mark.slow  # 300 commands
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(args=argv())
def test_any_argument_list_ends_in_an_exit_code_of_the_table(workdir, args, cli):
    result = cli(*args, cwd=workdir)  # a traceback or an internal error fails there
    assert result.code in EXIT_CODES, (args, result.code, result.err)
