"""The ``outboxd`` command run in this process (``daemon.cli.main``), as an operator
runs it: an argument list, standard input, the working directory and the
environment in; the exit code, standard output and standard error out.

A real process costs a second or more of imports on a loaded machine; the
command's own code is the same either way, so only a few tests (the console
script, exit codes of ``run``, signals) start one. ``tests/conftest.py``'s ``cli``
fixture hands out a ``Cli`` bound to the test's capture and monkeypatch.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.cli import main
from tests.support.zygote import spawn

# what a test's environment must not pass to the command unless it says so
CLEARED = ("OUTBOXD_CONFIG", "OUTBOXD_DEBUG", "OUTBOXD_SUPERVISOR")


@dataclass
class Result:
    """What a command did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    # the names of subprocess.CompletedProcess, for tests written against one
    @property
    def returncode(self) -> int:
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err

    def json(self) -> object:
        return json.loads(self.out)


class Cli:
    """``cli(*args, stdin=..., cwd=..., env=...)`` runs ``outboxd ARGS`` here.

    ``args`` may be bytes (what a shell passes that is not UTF-8): they reach the
    command as Python's own start-up would hand them (``os.fsdecode``). ``env``
    adds to (or, with None for a value, removes from) the environment for this
    call only; ``OUTBOXD_CONFIG``, ``OUTBOXD_DEBUG`` and ``OUTBOXD_SUPERVISOR`` are
    cleared unless given. A traceback or an internal error (exit 70) on stderr
    fails the test, as the README's promise is that none is ever printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(
        self,
        *args: str | bytes,
        stdin: bytes | None = b"",
        cwd: Path | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> Result:
        argv = [os.fsdecode(a) if isinstance(a, bytes) else a for a in args]
        with self.monkeypatch.context() as patch:
            for name in CLEARED:
                patch.delenv(name, raising=False)
            for name, value in (env or {}).items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            if cwd is not None:
                patch.chdir(cwd)
            patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin or b"")))
            self.capsys.readouterr()  # what the test printed before is not the command's
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse refused the command line (or --help)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        assert "internal error" not in captured.err, captured.err
        return Result(code, captured.out, captured.err)


# --- as a real process -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def outboxd(
    *args: str, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``outboxd ARGS`` in ``cwd`` (``$OUTBOXD_CONFIG`` unset unless ``env`` sets it),
    as a process of its own forked from the zygote (``tests.support.zygote``)."""
    environ = {k: v for k, v in os.environ.items() if k != "OUTBOXD_CONFIG"}
    environ.update(env or {})
    with tempfile.TemporaryDirectory(prefix="outboxd-cli-") as tmp:
        given = Path(tmp) / "stdin"
        if stdin is not None:
            given.write_bytes(stdin)
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        process = spawn(
            list(args), cwd, {**environ, "PYTHONPATH": str(ROOT)}, out, err,
            given if stdin is not None else None,
        )  # fmt: skip
        code = process.wait_blocking(120)
        return subprocess.CompletedProcess(
            [sys.executable, "-m", "daemon", *args], code, out.read_bytes(), err.read_bytes()
        )
