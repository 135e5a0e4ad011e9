"""What a reload says changed, from a table; secrets, header values and URL paths
never shown."""

from __future__ import annotations

import pytest

from daemon.config.diff import changes
from daemon.config.loader import parse_config

BASE = """
database: sqlite:///x.db
channels:
  c:
    kind: http
    url: https://hooks.example/in/s3cret-path?token=t0ken
    rate: 20/s
    headers: {X-Api-Key: k3y}
    hmac: {secret: hm4c}
    retry: {max_attempts: 12, backoff: 30s}
"""


def channel(**replace: str):
    text = BASE
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse_config(text).channels["c"]


@pytest.mark.parametrize(
    ("replace", "said"),
    [
        ({}, []),
        ({"rate: 20/s": "rate: 5/s"}, ["rate 20/s → 5/s"]),
        ({"rate: 20/s": "concurrency: 8"}, ["rate 20/s → (none)", "concurrency 4 → 8"]),
        (
            {"max_attempts: 12, backoff: 30s": "max_attempts: 20, backoff: 1m30s"},
            ["retry.max_attempts 12 → 20", "retry.backoff 30s → 1m30s"],
        ),
        ({"k3y": "n3w"}, ["headers.X-Api-Key changed"]),
        (
            {"{X-Api-Key: k3y}": "{X-Other: v}"},
            ["headers.X-Api-Key removed", "headers.X-Other added"],
        ),
        ({"hm4c": "n3w"}, ["hmac.secret changed"]),
        (
            {"hooks.example/in/s3cret-path": "other.example:8443/in/other"},
            ["url https://hooks.example/… → https://other.example:8443/…"],
        ),
    ],
)
def test_what_a_reload_says_changed(replace: dict[str, str], said: list[str]):
    found = changes(channel(), channel(**replace))
    assert sorted(found) == sorted(said)
    for secret in ("k3y", "hm4c", "s3cret-path", "t0ken", "n3w"):
        assert all(secret not in phrase for phrase in found)
