"""The YAML examples in README.md are valid configurations."""

import re
from pathlib import Path

import pytest

from daemon.config.loader import parse_config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


# values of the right shape for the variables whose shape is checked
SAMPLES = {
    "OPS_WEBHOOK_SECRET": "whsec_c2FtcGxlLXNlY3JldA==",
    "FILING_WEBHOOK_SECRET": "whsec_bmV3LXNlY3JldA==",
    "FILING_WEBHOOK_SECRET_OLD": "whsec_b2xkLXNlY3JldA==",
    "OUTBOXD_CONTROL_PORT": "8080",
}


def test_readme_has_yaml_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_yaml_example_is_valid(block):
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", block))
    environ = {name: SAMPLES.get(name, "x") for name in names}
    parse_config(block, source="README.md", environ=environ)
