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
