"""The BPJS Antrean visit flow's own vocabulary: message kinds, keys, and what a
delivery attempt's result means for a visit's progress.

A visit (one ``kodebooking`` of one source) is reported as a chain of messages on
a ``bpjs_antrean`` channel, each keyed by the visit and its step:

| step          | key              | message kind        | call                 |
|---------------|------------------|---------------------|----------------------|
| ``add``       | ``KB:add``       | ``bpjs.add``        | ``antrean/add``      |
| ``1``…``7``   | ``KB:task:N``    | ``bpjs.updatewaktu``| ``antrean/updatewaktu`` |
| ``99``        | ``KB:task:99``   | ``bpjs.updatewaktu``| (the cancellation)   |
| —             | (by hand)        | ``bpjs.batal``      | ``antrean/batal``    |

A visit's ``task_progress`` maps each step to an entry: ``queued`` and ``held``
(written by the poller, ``daemon.bpjs.plan``), ``sent``, ``retrying`` and
``failed`` (written with each delivery outcome, by ``progress`` below). An entry's
``source`` holds what the source said about the step (for instance that a
cancellation's time was observed, not read); outcomes keep it.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

from daemon.bpjs import payloads
from daemon.domain import jsontext
from daemon.domain.messages import (
    AttemptResult,
    ClaimedMessage,
    Delivered,
    Failed,
    Progress,
    RetryAt,
)

ADD = "add"
KIND_ADD = "bpjs.add"
KIND_TASK = "bpjs.updatewaktu"
KIND_BATAL = "bpjs.batal"
CALLS: dict[str, str] = {
    KIND_ADD: payloads.ADD,
    KIND_TASK: payloads.UPDATE_WAKTU,
    KIND_BATAL: payloads.BATAL,
}
MESSAGE_KINDS = tuple(CALLS)


def add_key(kodebooking: str) -> str:
    return f"{kodebooking}:add"


def task_key(kodebooking: str, task: int) -> str:
    return f"{kodebooking}:task:{task}"


def step_of(key: str) -> str | None:
    """The step a key names (``KB:add`` → ``add``, ``KB:task:5`` → ``5``); None for a
    key that is not the flow's."""
    head, sep, step = key.rpartition(":")
    if not sep or not head:
        return None
    if step == ADD:
        return ADD
    kodebooking, sep, word = head.rpartition(":")
    if sep and kodebooking and word == "task" and step.isdigit():
        return str(int(step)) if int(step) in payloads.TASK_IDS else None
    return None


def check_payload(kind: str, payload: bytes) -> payloads.Payload:
    """The checked body of a message of this kind; ``ValueError`` saying why not.
    The same rule at enqueue and before each send."""
    call = CALLS.get(kind)
    if call is None:
        known = ", ".join(sorted(MESSAGE_KINDS))
        raise ValueError(f"unknown message kind {kind!r} for BPJS Antrean (expected {known})")
    try:
        body = jsontext.loads(payload)
    except jsontext.NotJson as exc:
        raise ValueError(f"{call} body is not JSON: {exc}") from None
    try:
        return payloads.parse(call, body)
    except ValueError as exc:
        raise ValueError(f"{call} body: {exc}") from None


def progress(message: ClaimedMessage, result: AttemptResult, now: datetime) -> Progress | None:
    """The visit's new entry for the message's step after ``result``; None when the
    result changes nothing (released) or the message is not a step of a visit."""
    step = step_of(message.key)
    if step is None:
        return None
    attempts = message.attempts + 1
    if isinstance(result, Delivered):
        entry: dict[str, Any] = {"status": "sent", "sent_at": now.isoformat()}
    elif isinstance(result, Failed):
        entry = {"status": "failed", "reason": result.error, "attempts": attempts}
    elif isinstance(result, RetryAt):
        entry = {
            "status": "retrying",
            "reason": result.error,
            "next_attempt_at": result.at.isoformat(),
            "attempts": attempts if result.counted else message.attempts,
        }
    else:
        return None
    waktu = _waktu(message.payload)
    if waktu is not None:
        entry["waktu"] = waktu
    return step, entry


def _waktu(payload: bytes) -> int | None:
    with contextlib.suppress(ValueError, AttributeError, RecursionError):
        value = json.loads(payload).get("waktu")
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None
