"""The BPJS visit flow's keys: what a key names, and only the flow's own keys."""

from __future__ import annotations

import pytest

from daemon.bpjs.flow import add_key, check_payload, step_of, task_key


@pytest.mark.parametrize(
    ("key", "step"),
    [
        (add_key("KB1"), "add"),
        (task_key("KB1", 5), "5"),
        (task_key("KB1", 99), "99"),
        (task_key("2026:A:7", 3), "3"),  # a kodebooking with colons of its own
        ("KB1:task:05", "5"),
        ("KB1:task:8", None),  # no such task
        ("KB1:task:", None),
        ("KB1:5", None),
        ("add", None),
        (":add", None),
        ("demo-20261123-1", None),
    ],
)
def test_step_of(key: str, step: str | None):
    assert step_of(key) == step


def test_an_unknown_message_kind_names_the_known_ones():
    with pytest.raises(ValueError, match=r"expected bpjs\.add, bpjs\.batal, bpjs\.updatewaktu"):
        check_payload("bpjs.getlisttask", b"{}")
    with pytest.raises(ValueError, match="not JSON"):
        check_payload("bpjs.add", b"[" * 100_000)
