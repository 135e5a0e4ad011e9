"""docs/scheduler.md: every YAML example is a valid set of schedules (with a
database line, which the page leaves out)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.config.loader import parse_config

DOC = (Path(__file__).resolve().parents[2] / "docs" / "scheduler.md").read_text()
YAML = re.findall(r"```yaml\n(.*?)```", DOC, re.S)


def test_the_page_has_examples():
    assert len(YAML) >= 2


@pytest.mark.parametrize("block", YAML, ids=[f"yaml{i}" for i in range(len(YAML))])
def test_a_yaml_example_is_valid(block: str):
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", block))  # secrets, of their shape
    environ = dict.fromkeys(names, "whsec_c2FtcGxlLXNlY3JldA==")
    settings = parse_config(f"database: sqlite:///unused.db\n{block}", source="docs/scheduler.md",
                            environ=environ)  # fmt: skip
    assert settings.schedules
