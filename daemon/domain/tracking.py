"""Status checks of sent messages: what is due a check and what the partner said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["confirmed", "rejected", "open"]


@dataclass(frozen=True)
class DueCheck:
    id: int
    key: str
    response: str | None  # what the partner answered when the message was sent
    checks: int  # checks made so far


@dataclass(frozen=True)
class CheckResult:
    id: int
    verdict: Verdict
    answer: str  # the partner's status, as it said it


# What keeps a tracked visit from going on, as an operator lists them: a step held
# (waiting, with the reason), failed, or cancelled (a step cancelled or rejected,
# or the booking cancelled: BPJS task 99).
VISIT_TROUBLES = ("held", "failed", "cancelled")
