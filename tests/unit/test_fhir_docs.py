"""docs/fhir.md: every YAML example is a valid configuration, and every JSON
example a FHIR message the channel takes (its kind, its payload, its ``after``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from daemon.channels.fhir.resources import check
from daemon.config.loader import parse_config

DOC = (Path(__file__).resolve().parents[2] / "docs" / "fhir.md").read_text()
YAML = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
JSON = re.findall(r"```json\n(.*?)```", DOC, re.S)


def test_the_page_has_examples():
    assert YAML


@pytest.mark.parametrize("block", YAML, ids=[f"yaml{i}" for i in range(len(YAML))])
def test_a_yaml_example_is_a_valid_configuration(block):
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", block))
    settings = parse_config(block, source="docs/fhir.md", environ=dict.fromkeys(names, "x-value"))
    assert any(c.kind == "fhir" for c in settings.channels.values())


@pytest.mark.parametrize("block", JSON, ids=[f"json{i}" for i in range(len(JSON))])
def test_a_json_example_holds_messages_the_channel_takes(block):
    document = json.loads(block)
    messages = document["messages"] if isinstance(document, dict) else document
    keys = set()
    for message in messages:
        payload = message["payload"]
        body = payload if isinstance(payload, str) else json.dumps(payload)
        check(body.encode(), message["kind"])
        assert message.get("after") in (None, *keys)  # names an earlier message of the batch
        keys.add(message["key"])
