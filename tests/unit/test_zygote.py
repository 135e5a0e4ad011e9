"""The zygote the process tests fork their ``outboxd`` processes from
(``tests.support.zygote``): each child is the command as ``python -m daemon`` runs
it, with the test's working directory, environment, input and output, in a
session of its own, and its end (an exit code, or -N for signal N) comes back."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import DaemonProcess
from tests.support.waiting import eventually
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


async def test_a_dispatchers_store_worker_is_forked_into_its_own_session_and_ends_with_it(
    tmp_path: Path,
):
    config = tmp_path / "o.yaml"
    health = free_port()
    config.write_text(
        f"database: sqlite:///{tmp_path}/o.db\nroles: {{dispatcher: {{base_port: {health}}}}}\n"
    )
    assert run(tmp_path, "migrate", "-c", str(config))[0] == 0
    dispatcher = DaemonProcess(tmp_path, config)
    await dispatcher.start(health)
    [worker] = dispatcher.children()
    assert dispatcher.proc is not None
    assert os.getsid(worker) == worker != dispatcher.proc.pid  # a session of its own
    assert "-m\0tests.support.zygote" in Path(f"/proc/{worker}/cmdline").read_text()  # forked
    status, body = await dispatcher.health()  # and it serves: the dispatcher is healthy
    assert status == 200 and body["status"] == "ok", body
    dispatcher.proc.kill()
    assert await dispatcher.proc.wait() == -signal.SIGKILL

    def gone() -> bool:
        try:
            state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"  # ended, not yet reaped by init

    await eventually(gone, "the worker ends when its dispatcher is killed", timeout=30)
