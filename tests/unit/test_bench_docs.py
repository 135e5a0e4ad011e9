"""The start-up benchmark's command lines in docs/benchmarks.md are ones it takes."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "benchmarks.md").read_text()
SECTION = DOC[DOC.index("## Start-up") :].split("\n## ", 1)[0]
COMMANDS = [
    line
    for block in re.findall(r"```sh\n(.*?)```", SECTION, re.S)
    for line in block.splitlines()
    if "ops/bench/startup.py" in line
]


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("startup_bench", ROOT / "ops/bench/startup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_start_up_section_shows_its_commands() -> None:
    assert COMMANDS


@pytest.mark.parametrize("line", COMMANDS)
def test_a_documented_command_line_parses(line: str) -> None:
    argv = shlex.split(line)
    script = next(i for i, word in enumerate(argv) if word.endswith("ops/bench/startup.py"))
    assert argv[:script] == [".venv/bin/python"]
    bench().build_parser().parse_args(argv[script + 1 :])
