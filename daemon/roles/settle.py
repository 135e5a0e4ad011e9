"""What a channel's answer becomes, decided where the claimed message and the
channel's policy are (the delivery loop); the store writes it. Pure: the clock
and the dice come in as arguments.

| the channel answers                  | the result                                   |
|--------------------------------------|----------------------------------------------|
| delivered                            | ``Delivered`` with the peer's response       |
| rejected                             | ``Failed`` (refused for good)                |
| retry, within the policy             | ``RetryAt`` the backoff or the delay asked   |
| retry, attempts or age run out       | ``Failed`` with ``gave_up``                  |
| retry, waiting for a predecessor     | ``RetryAt``, not counted: ``max_age`` bounds it |
| held: not sent (the channel has no   | ``RetryAt`` after the wait asked, not counted |
| access token)                        | and not bounded: the message never left  |

A kind whose messages belong to a tracked item adds the item's progress entry.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.channels.base import Outcome, Verdict
from daemon.channels.kind import ProgressRule
from daemon.domain.messages import ClaimedMessage, Delivered, Failed, RetryAt
from daemon.resilience.backoff import RetryPolicy, backoff_delay


def _utcnow() -> datetime:
    return datetime.now(UTC)


def settle(
    message: ClaimedMessage,
    outcome: Outcome,
    policy: RetryPolicy,
    progress: ProgressRule | None = None,
    now: Callable[[], datetime] = _utcnow,
    rand: Callable[[], float] = random.random,
) -> Delivered | Failed | RetryAt:
    result: Delivered | Failed | RetryAt
    if outcome.verdict is Verdict.DELIVERED:
        result = Delivered(message.id, outcome.response)
        if progress is None:
            return result  # the hot path: no clock needed
        at = now()
    elif outcome.verdict is Verdict.REJECTED:
        at = now()
        result = Failed(message.id, outcome.detail, outcome.response)
    else:
        at = now()
        result = _retry(message, outcome, policy, at, rand)
    if progress is not None:
        result.progress = progress(message, result, at)
    return result


def _retry(
    message: ClaimedMessage,
    outcome: Outcome,
    policy: RetryPolicy,
    now: datetime,
    rand: Callable[[], float],
) -> Failed | RetryAt:
    if outcome.unsent:
        return _held(message, outcome, policy, now, rand)
    counted = not outcome.awaits_predecessor
    attempt = message.attempts + 1
    decision = policy.decide(
        attempt if counted else message.attempts,
        message.created_at,
        now,
        outcome.retry_after,
        rand,
        counted=counted,
    )
    details: dict[str, Any] = {
        "error": outcome.detail,
        "attempt": attempt,
        "decision": decision.reason,
    }
    if not counted:
        details["counted"] = False
    if decision.retry_at is None:
        error = f"{outcome.detail} ({decision.reason})"
        return Failed(message.id, error, outcome.response, gave_up=True, details=details)
    details["retry_at"] = decision.retry_at.isoformat()
    return RetryAt(
        message.id, decision.retry_at, outcome.detail, outcome.response, counted, details
    )


def _held(
    message: ClaimedMessage,
    outcome: Outcome,
    policy: RetryPolicy,
    now: datetime,
    rand: Callable[[], float],
) -> RetryAt:
    """The channel could not send it at all: wait as asked (or a first backoff),
    neither counting an attempt nor giving up, whatever its age."""
    if outcome.retry_after is not None:
        delay = min(max(0.0, outcome.retry_after), policy.max_backoff)
    else:
        delay = backoff_delay(1, policy.backoff, policy.max_backoff, rand)
    at = now + timedelta(seconds=delay)
    details: dict[str, Any] = {
        "error": outcome.detail,
        "attempt": message.attempts + 1,
        "decision": "not sent: the channel could not send; the message waits",
        "counted": False,
        "retry_at": at.isoformat(),
    }
    return RetryAt(message.id, at, outcome.detail, None, False, details)
