"""Visits and their task progress (BPJS Antrean), and poll cursors.

A visit's ``task_progress`` maps a step (``"add"``, ``"1"``…``"7"``, ``"99"``)
to its state, e.g. ``{"status": "sent", "sent_at": …, "waktu": …}``,
``{"status": "held", "reason": …}``. The poller writes ``queued`` and ``held``
entries in the transaction that enqueues; the dispatcher's outcomes write
``sent``, ``retrying`` and ``failed`` in the transaction that records them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.store.base import StoreBase, chunked
from daemon.store.models import (
    FAILED,
    PENDING,
    SENT,
    Message,
    PollCursor,
    Visit,
)
from daemon.store.types import EnqueueResult, NewMessage

TRACKED_PREFIX = "bpjs."  # message kinds whose outcomes update a visit


@dataclass(frozen=True)
class VisitView:
    kodebooking: str
    source: str
    task_progress: dict[str, dict[str, Any]]
    created_at: datetime
    updated_at: datetime


def step_of(key: str) -> str:
    """The step a message key names: ``KB:add`` → ``add``, ``KB:task:5`` → ``5``."""
    return key.rsplit(":", 1)[-1]


class VisitOps(StoreBase):
    def get_visit(self, kodebooking: str) -> VisitView | None:
        def work() -> VisitView | None:
            row = Visit.get_or_none(Visit.kodebooking == kodebooking)
            return None if row is None else _view(row)

        return self._read(work)

    def task_progress(self, kodebookings: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The task progress of those visits that are known, by kodebooking."""

        def work() -> dict[str, dict[str, Any]]:
            found: dict[str, dict[str, Any]] = {}
            for chunk in chunked(sorted(set(kodebookings))):
                query = Visit.select(Visit.kodebooking, Visit.task_progress).where(
                    Visit.kodebooking.in_(list(chunk))
                )
                for row in query:
                    found[row.kodebooking] = row.task_progress
            return found

        return self._read(work)

    def visits(self, since: datetime | None = None, limit: int = 500) -> list[VisitView]:
        """The most recently updated visits first (for the control API)."""

        def work() -> list[VisitView]:
            query = Visit.select().order_by(Visit.updated_at.desc()).limit(limit)
            if since is not None:
                query = query.where(Visit.updated_at >= since)
            return [_view(row) for row in query]

        return self._read(work)

    def sync_visits(
        self,
        source: str,
        progress: Mapping[str, Mapping[str, dict[str, Any]]],
        messages: Sequence[NewMessage],
        cursor: str | None = None,
        actor: str = "poller",
        now: datetime | None = None,
    ) -> list[EnqueueResult]:
        """One poll's result in one transaction: enqueue ``messages``, merge
        ``progress`` (kodebooking → step → entry) into the visits, and move the
        source's cursor. An entry never replaces one that is further along
        (a step already sent stays sent)."""

        def work() -> list[EnqueueResult]:
            when = self._now(now)
            results = self._enqueue(list(messages), actor, when) if messages else []
            self._merge_progress(source, progress, when)
            if cursor is not None:
                self._set_cursor(source, cursor, when)
            return results

        return self._write(work)

    def get_cursor(self, source: str) -> str | None:
        def work() -> str | None:
            row = PollCursor.get_or_none(PollCursor.source == source)
            return None if row is None else row.value

        return self._read(work)

    # --- internals (inside a unit of work) -----------------------------------------

    def _set_cursor(self, source: str, value: str, now: datetime) -> None:
        PollCursor.insert(source=source, value=value, updated_at=now).on_conflict(
            conflict_target=[PollCursor.source],
            update={PollCursor.value: value, PollCursor.updated_at: now},
        ).execute()

    def _merge_progress(
        self,
        source: str,
        progress: Mapping[str, Mapping[str, dict[str, Any]]],
        now: datetime,
        outcomes: bool = False,
    ) -> None:
        """Merge entries into visits. The poller's entries (``outcomes=False``:
        queued, held) only fill steps that are new, queued or held; a delivery
        outcome always replaces the step's entry."""
        if not progress:
            return
        rows = self._locked_visits(list(progress))
        for kodebooking, steps in progress.items():
            row = rows.get(kodebooking)
            current = dict(row.task_progress) if row else {}
            merged = {**current}
            for step, entry in steps.items():
                previous = current.get(step, {}).get("status")
                if outcomes or previous in (None, "queued", "held"):
                    merged[step] = entry
            if row is None:
                Visit.insert(
                    kodebooking=kodebooking,
                    source=source,
                    task_progress=merged,
                    created_at=now,
                    updated_at=now,
                ).execute()
            elif merged != current:
                Visit.update(task_progress=merged, updated_at=now).where(
                    Visit.id == row.id
                ).execute()

    def _locked_visits(self, kodebookings: list[str]) -> dict[str, Visit]:
        found: dict[str, Visit] = {}
        for chunk in chunked(sorted(set(kodebookings))):
            query = Visit.select().where(Visit.kodebooking.in_(list(chunk)))
            if self.postgres:
                query = query.for_update()
            found.update({row.kodebooking: row for row in query})
        return found

    def _track_outcomes(
        self, recorded: Mapping[int, str], errors: Mapping[int, str], now: datetime
    ) -> None:
        """Write the visits' progress for the tracked messages just recorded."""
        progress: dict[str, dict[str, dict[str, Any]]] = {}
        for chunk in chunked(sorted(recorded)):
            rows = Message.select(
                Message.id,
                Message.key,
                Message.kind,
                Message.group_key,
                Message.payload,
                Message.next_attempt_at,
                Message.attempts,
            ).where(Message.id.in_(list(chunk)) & Message.kind.startswith(TRACKED_PREFIX))
            for row in rows:
                kodebooking = row.group_key or row.key.split(":", 1)[0]
                entry = _entry(row, recorded[row.id], errors.get(row.id), now)
                progress.setdefault(kodebooking, {})[step_of(row.key)] = entry
        self._merge_progress("dispatcher", progress, now, outcomes=True)


def _entry(row: Message, status: str, error: str | None, now: datetime) -> dict[str, Any]:
    waktu = None
    with contextlib.suppress(ValueError, AttributeError):
        waktu = json.loads(bytes(row.payload)).get("waktu")
    if status == SENT:
        entry: dict[str, Any] = {"status": "sent", "sent_at": now.isoformat()}
    elif status == FAILED:
        entry = {"status": "failed", "reason": error or "failed", "attempts": row.attempts}
    elif status == PENDING:
        entry = {
            "status": "retrying",
            "reason": error or "released",
            "next_attempt_at": row.next_attempt_at.isoformat(),
            "attempts": row.attempts,
        }
    else:
        entry = {"status": status}
    if waktu is not None:
        entry["waktu"] = waktu
    return entry


def _view(row: Visit) -> VisitView:
    return VisitView(row.kodebooking, row.source, row.task_progress, row.created_at, row.updated_at)
