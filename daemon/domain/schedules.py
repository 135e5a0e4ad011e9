"""Schedules and their runs as the store answers them, and what the scheduler asks it
to record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from daemon.domain.errors import Refused

Overlap = Literal["skip", "queue_one", "allow"]


class ScheduleError(Refused):
    """An operation on a schedule that cannot be done as asked; the text says
    why, ``kind`` whether there is no such schedule (``missing``) or it cannot be
    done to the one there is (``conflict``: the name is taken, the file's)."""

    def __init__(self, text: str, kind: str = "conflict", field: str | None = "name") -> None:
        super().__init__(text, kind, field)


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    name: str
    definition: dict[str, Any]
    origin: str
    revision: int
    paused: bool
    pause_note: str | None
    paused_by: str | None
    paused_at: datetime | None
    removed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    runs_made: int = 0  # counted against max_runs: its fires' runs since it was added


@dataclass(frozen=True)
class RunRow:
    id: int
    schedule_id: int
    schedule: str
    fire_time: datetime
    attempt: int
    trigger: str
    status: str
    retry_of: int | None
    due_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    error: str | None
    output: dict[str, Any] | None
    note: str | None
    cancel_requested_at: datetime | None = None
    cancel_requested_by: str | None = None
    cancel_note: str | None = None

    @property
    def cancel_text(self) -> str:
        """What a run an operator cancelled says: who, and why."""
        why = f": {self.cancel_note}" if self.cancel_note else ""
        return f"cancelled by {self.cancel_requested_by or 'an operator'}{why}"


@dataclass(frozen=True)
class Retry:
    """A retry to queue: the next attempt of a fire, due at ``due_at``."""

    due_at: datetime
    note: str | None = None


@dataclass(frozen=True)
class RunEnd:
    """How a run ended: its status, error, output, and the retry to queue."""

    run_id: int
    status: str
    error: str | None = None
    output: dict[str, Any] | None = None
    retry: Retry | None = None


@dataclass(frozen=True)
class Claim:
    """A fire to claim: its schedule, time, trigger and the schedule's overlap
    policy (``max_concurrent``: the runs ``allow`` lets run at once, None for no
    bound), and the runs the schedule may make in all (``max_runs``)."""

    schedule_id: int
    fire_time: datetime
    trigger: str
    overlap: Overlap
    note: str | None = None
    max_concurrent: int | None = None
    max_runs: int | None = None
