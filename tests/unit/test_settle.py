"""What a channel's answer becomes (``daemon.roles.settle``), from a table, with the
clock and the dice injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.bpjs import flow
from daemon.channels.base import Outcome
from daemon.domain.messages import ClaimedMessage, Delivered, Failed, RetryAt
from daemon.resilience.backoff import RetryPolicy
from daemon.roles.settle import settle

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, backoff=10, max_backoff=100, max_age=3600)


def message(attempts: int = 0, created: datetime = T0, key: str = "k") -> ClaimedMessage:
    return ClaimedMessage(1, "c", "hl7", key, b'{"waktu": 1795917600000}', attempts, created, T0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("attempts", "outcome", "now", "expected"),
    [
        (0, Outcome.delivered("AA"), at(1), Delivered(1, "AA")),
        (0, Outcome.rejected("AR: no", "MSA|AR"), at(1), Failed(1, "AR: no", "MSA|AR")),
        # full jitter: half of 10 s after the first, of 20 s after the second
        (0, Outcome.retry("timeout"), at(0), RetryAt(1, at(5), "timeout")),
        (1, Outcome.retry("timeout"), at(5), RetryAt(1, at(15), "timeout")),
        # the delay the peer asked for, as given
        (
            0,
            Outcome.retry("429", "busy", retry_after=120),
            at(0),
            RetryAt(1, at(120), "429", "busy"),
        ),
        # the third attempt was the last
        (2, Outcome.retry("timeout"), at(15), Failed(1, "timeout (gave up after 3 attempt(s))")),
        # never past created + max_age: the last retry lands on the deadline
        (0, Outcome.retry("down", retry_after=7200), at(60), RetryAt(1, at(3600), "down")),
        (0, Outcome.retry("down"), at(3600), Failed(1, "down (gave up: older than max_age 1h)")),
        # waiting for a predecessor: not an attempt, so past max_attempts it still waits
        (
            5,
            Outcome.retry("TaskId=4 belum ada", retry_after=60, awaits_predecessor=True),
            at(100),
            RetryAt(1, at(160), "TaskId=4 belum ada", counted=False),
        ),
        # ... until max_age
        (
            5,
            Outcome.retry("TaskId=4 belum ada", retry_after=60, awaits_predecessor=True),
            at(3600),
            Failed(1, "TaskId=4 belum ada (gave up: older than max_age 1h)"),
        ),
    ],
    ids=lambda v: v.verdict.value if isinstance(v, Outcome) else None,
)
def test_what_an_answer_becomes(attempts, outcome, now, expected):
    result = settle(message(attempts), outcome, POLICY, now=lambda: now, rand=lambda: 0.5)
    assert type(result) is type(expected)
    assert result.id == expected.id
    if isinstance(expected, RetryAt):
        assert (result.at, result.error, result.response, result.counted) == (
            expected.at,
            expected.error,
            expected.response,
            expected.counted,
        )
        assert result.details["retry_at"] == expected.at.isoformat()
        assert result.details["attempt"] == attempts + 1
    elif isinstance(expected, Failed):
        assert (result.error, result.gave_up) == (expected.error, "gave up" in expected.error)
    else:
        assert result.response == expected.response
    assert result.progress is None


def test_a_tracked_kind_adds_its_progress_entry():
    kb = message(key="KB1:task:5")
    delivered = settle(kb, Outcome.delivered("{}"), POLICY, flow.progress, now=lambda: at(1))
    assert delivered.progress == (
        "5",
        {"status": "sent", "sent_at": at(1).isoformat(), "waktu": 1795917600000},
    )
    waiting = settle(
        kb,
        Outcome.retry("TaskId=4 belum ada", retry_after=60, awaits_predecessor=True),
        POLICY,
        flow.progress,
        now=lambda: at(1),
    )
    step, entry = waiting.progress
    assert step == "5" and entry["status"] == "retrying" and entry["attempts"] == 0
    assert entry["next_attempt_at"] == at(61).isoformat()
    failed = settle(kb, Outcome.rejected("BPJS 201: Rujukan tidak valid"), POLICY, flow.progress)
    assert failed.progress[1] == {
        "status": "failed",
        "reason": "BPJS 201: Rujukan tidak valid",
        "attempts": 1,
        "waktu": 1795917600000,
    }
