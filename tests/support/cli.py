"""Run the ``outboxd`` command as a user does: a real process, its exit code and
its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def outboxd(
    *args: str, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``outboxd ARGS`` in ``cwd`` (``$OUTBOXD_CONFIG`` unset unless ``env`` sets it)."""
    environ = {k: v for k, v in os.environ.items() if k != "OUTBOXD_CONFIG"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
