"""The zygote the process tests fork their ``outboxd`` processes from
(``tests.support.zygote``): each child is the command as ``python -m daemon`` runs
it, with the test's working directory, environment, input and output, in a
session of its own, and its end (an exit code, or -N for signal N) comes back."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.zygote import spawn


def run(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = tmp_path / "out", tmp_path / "err"
    for path in (out, err):
        path.unlink(missing_ok=True)
    code = spawn(list(argv), tmp_path, {**os.environ, **(env or {})}, out, err).wait_blocking(60)
    return code, out.read_text(), err.read_text()


def test_the_exit_code_and_each_stream_come_back(tmp_path: Path):
    code, out, err = run(tmp_path, "--help")
    assert (code, err) == (0, "") and "enqueue" in out
    code, out, err = run(tmp_path, "no-such-command")
    assert code == 2 and out == "" and "invalid choice: 'no-such-command'" in err


def test_the_working_directory_and_the_environment_are_the_tests(tmp_path: Path):
    (tmp_path / "here.yaml").write_text("database: sqlite:///here.db\n")
    code, out, err = run(tmp_path, "check-config", env={"OUTBOXD_CONFIG": "here.yaml"})
    assert code == 0 and "here.yaml" in out + err, err
    (tmp_path / "here.yaml").write_text("database: sqlite:///here.db\nchanels: {}\n")
    code, _, err = run(tmp_path, "check-config", env={"OUTBOXD_CONFIG": "here.yaml"})
    assert code == 78 and "chanels" in err, err


def test_a_signal_ends_it_as_minus_the_signal_in_a_session_of_its_own(tmp_path: Path):
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)  # opening it blocks the child until a writer comes: none will
    child = spawn(["--help"], tmp_path, dict(os.environ), tmp_path / "out", stdin=fifo)
    deadline = time.monotonic() + 30
    while os.getsid(child.pid) != child.pid:  # forked, not yet its own session
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert child.returncode is None
    child.send_signal(signal.SIGTERM)
    assert child.wait_blocking(30) == -signal.SIGTERM
    child.send_signal(signal.SIGTERM)  # ended: no signal goes to what may reuse its pid
