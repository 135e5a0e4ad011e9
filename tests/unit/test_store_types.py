"""Values that cross to and from the store's worker process survive pickling whole."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from daemon.domain.messages import ClaimedMessage, Delivered, Failed, Released, RetryAt

NOW = datetime(2026, 11, 23, 1, 2, 3, 456789, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        ClaimedMessage(7, "hie", "hl7", "k", b"MSH|\x00\xff", 2, NOW, NOW, 5, "patient-1"),
        ClaimedMessage(8, "hie", "hl7", "k2", b"", 0, NOW, NOW),
        Delivered(1),
        Delivered(1, "MSA|AA|1"),
        Delivered(1, "{}", ("5", {"status": "sent", "waktu": 1764000000000})),
        RetryAt(2, NOW, "no ACK"),
        RetryAt(2, NOW, "busy", "503", False, {"error": "busy", "attempt": 3}, ("add", {})),
        Failed(3, "AR", "MSA|AR|3"),
        Failed(3, "gave up", None, True, {"decision": "gave up after 12 attempt(s)"}),
        Released(4),
    ],
    ids=repr,
)
def test_pickles_to_an_equal_value_of_the_same_type(value: object):
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        copy = pickle.loads(pickle.dumps(value, protocol))
        assert type(copy) is type(value) and copy == value and copy is not value


def test_a_batch_keeps_its_order_and_shares_nothing_by_accident():
    batch = [Delivered(i, f"ACK {i}") for i in range(50)] + [Released(99)]
    copy = pickle.loads(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
    assert copy == batch
    assert [o.id for o in copy] == [*range(50), 99]
