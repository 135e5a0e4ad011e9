"""Tracked items (a source's visits) with their progress, and poll cursors.

A visit belongs to one source and is named by its key there (a BPJS
``kodebooking``); its ``task_progress`` maps a step to an entry (a JSON object).
The store does not read the entries: a source's poll writes its entries
(``sync_visits``) and fills only steps that are new, ``queued`` or ``held``;
a delivery outcome's entry (``record``) replaces its step's entry, keeping what
the source said about the step (the entry's ``source`` object). Messages are
linked to their visit when they are enqueued with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import peewee as pw

from daemon.domain.limits import MAX_PAGE
from daemon.domain.messages import EnqueueResult, NewMessage, Progress
from daemon.domain.selection import OperatorRefused
from daemon.domain.tracking import VISIT_TROUBLES
from daemon.domain.views import VisitView
from daemon.store import models
from daemon.store.enqueue import Enqueuer
from daemon.store.models import Visit, db_timestamp
from daemon.store.sql.base import chunked
from daemon.store.unit import Unit

SOURCE_FACTS = "source"  # the part of an entry an outcome keeps
_FILLABLE = (None, "queued", "held")  # steps a source's entry may (re)write


def merged(
    current: Mapping[str, Any], steps: Mapping[str, dict[str, Any]], outcome: bool
) -> dict[str, Any]:
    """A visit's progress with ``steps`` merged in: a delivery outcome's entry
    replaces its step's (keeping the source's facts); a source's entry fills a
    step that is new, ``queued`` or ``held``."""
    out = dict(current)
    for step, entry in steps.items():
        previous = current.get(step)
        if outcome:
            facts = previous.get(SOURCE_FACTS) if isinstance(previous, dict) else None
            out[step] = {**entry, SOURCE_FACTS: facts} if facts else entry
        elif not isinstance(previous, dict) or previous.get("status") in _FILLABLE:
            out[step] = entry
    return out


class VisitProgress:
    """Progress entries merged into visits, inside the caller's unit of work."""

    def __init__(self, unit: Unit) -> None:
        self.sql = unit.sql
        self.m = unit.models

    def merge_outcomes(self, progress: Mapping[int, Progress], now: datetime) -> None:
        """Merge delivery outcomes' entries (message id → (step, entry)) into the
        visits of their messages (the dialect's statements: on the delivery path)."""
        visit_of = self.sql.message_visits(sorted(progress))
        if not visit_of:
            return
        current = self.sql.locked_progress(sorted(set(visit_of.values())))
        by_visit: dict[int, dict[str, dict[str, Any]]] = {}
        for message_id, (step, entry) in sorted(progress.items()):
            visit = visit_of.get(message_id)
            if visit is not None and visit in current:
                by_visit.setdefault(visit, {})[step] = entry
        stamp = db_timestamp(now)
        for visit, steps in by_visit.items():
            was = current[visit] or {}
            now_ = merged(was, steps, outcome=True)
            if now_ != was:
                self.sql.save_progress(visit, now_, stamp)

    def locked_visits(self, source: str, keys: Iterable[str], now: datetime) -> dict[str, Visit]:
        """The source's visits with these keys, created where missing, locked.

        Locked in id order, as a dispatcher recording answers locks them
        (``locked_progress``): on PostgreSQL two transactions locking the same rows
        in different orders deadlock (the order a plan reads rows in is no order)."""
        Visit = self.m.Visit
        wanted = sorted(set(keys))
        found: dict[str, models.Visit] = {}
        ids: list[int] = []
        for chunk in chunked(wanted):
            ids += [
                row.id
                for row in Visit.select(Visit.id).where(
                    (Visit.source == source) & Visit.kodebooking.in_(list(chunk))
                )
            ]

        def lock(chunk: Sequence[int]) -> None:
            query = Visit.select().where(Visit.id.in_(list(chunk))).order_by(Visit.id)
            found.update({row.kodebooking: row for row in self.sql.for_update(query)})

        def read(chunk: Sequence[str]) -> None:
            query = Visit.select().where(
                (Visit.source == source) & Visit.kodebooking.in_(list(chunk))
            )
            found.update({row.kodebooking: row for row in self.sql.for_update(query)})

        for id_chunk in chunked(sorted(ids)):
            lock(id_chunk)
        missing = [k for k in wanted if k not in found]
        for chunk in chunked(missing):
            Visit.insert_many(
                [
                    {
                        "kodebooking": key,
                        "source": source,
                        "task_progress": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for key in chunk
                ]
            ).on_conflict_ignore().execute()
            read(chunk)
        return found

    def merge_sources(
        self,
        rows: Mapping[str, Visit],
        progress: Mapping[str, Mapping[str, dict[str, Any]]],
        now: datetime,
    ) -> None:
        """Merge a source's entries (visit key → step → entry) into its visits."""
        Visit = self.m.Visit
        for key, steps in progress.items():
            row = rows.get(key)
            if row is None:
                continue
            current = row.task_progress or {}
            now_ = merged(current, steps, outcome=False)
            if now_ != current:
                Visit.update(task_progress=now_, updated_at=now).where(Visit.id == row.id).execute()
                row.task_progress = now_


class Visits:
    """Tracked items and poll cursors: a source's side."""

    def __init__(self, unit: Unit, enqueuer: Enqueuer, progress: VisitProgress) -> None:
        self.unit = unit
        self.m = unit.models
        self.enqueuer = enqueuer
        self.progress = progress

    def find_visits(self, kodebooking: str, source: str | None = None) -> list[VisitView]:
        """The visits with this key (one per source that has it), or that source's."""
        Visit = self.m.Visit

        def work() -> list[VisitView]:
            where = Visit.kodebooking == kodebooking
            if source is not None:
                where &= Visit.source == source
            return [_view(row) for row in Visit.select().where(where).order_by(Visit.source)]

        return self.unit.read(work)

    def troubled_visits(
        self,
        kinds: Sequence[str] = VISIT_TROUBLES,
        limit: int = 50,
        before_id: int | None = None,
        source: str | None = None,
    ) -> tuple[list[tuple[int, VisitView]], int | None]:
        """Visits with a step ``held``, ``failed`` or ``cancelled`` (``kinds``: any of
        them; ``cancelled``: a step cancelled or rejected, or the booking cancelled,
        task 99), newest first (by id), at most ``limit``, before ``before_id``:
        ((id, visit) of each, the cursor of the next page or None). Read newest first
        until the page is full: the whole table when fewer match."""
        if not 1 <= limit <= MAX_PAGE:
            raise OperatorRefused(f"limit must be 1 to {MAX_PAGE}, not {limit}", "limit")
        unknown = [k for k in kinds if k not in VISIT_TROUBLES]
        if unknown or not kinds:
            raise OperatorRefused(
                f"a visit's trouble is one of {', '.join(VISIT_TROUBLES)}", "problem"
            )
        Visit = self.m.Visit
        words = {"held": ["held"], "failed": ["failed"], "cancelled": ["cancelled", "rejected"]}

        def holds(text: str) -> pw.ColumnBase:  # the JSON text as stored, not a JSON value
            return pw.NodeList(
                (Visit.task_progress, pw.SQL("LIKE"), pw.Value(f"%{text}%", converter=False))
            )

        parts = [holds(f'"status": "{status}"') for kind in kinds for status in words[kind]]
        if "cancelled" in kinds:
            parts.append(holds('"99": {'))
        where = parts[0]
        for part in parts[1:]:
            where = where | part
        if before_id is not None:
            where = where & (Visit.id < before_id)
        if source is not None:
            where = where & (Visit.source == source)

        def work() -> tuple[list[tuple[int, VisitView]], int | None]:
            rows = list(Visit.select().where(where).order_by(Visit.id.desc()).limit(limit + 1))
            found = [(row.id, _view(row)) for row in rows[:limit]]
            return found, (found[-1][0] if len(rows) > limit else None)

        return self.unit.read(work)

    def task_progress(self, source: str, visits: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The progress of those of the source's visits that are known, by key."""
        Visit = self.m.Visit

        def work() -> dict[str, dict[str, Any]]:
            found: dict[str, dict[str, Any]] = {}
            for chunk in chunked(sorted(set(visits))):
                query = Visit.select(Visit.kodebooking, Visit.task_progress).where(
                    (Visit.source == source) & Visit.kodebooking.in_(list(chunk))
                )
                for row in query:
                    found[row.kodebooking] = row.task_progress
            return found

        return self.unit.read(work)

    def sync_visits(
        self,
        source: str,
        progress: Mapping[str, Mapping[str, dict[str, Any]]],
        messages: Sequence[NewMessage],
        cursor: str | None = None,
        actor: str = "poller",
        now: datetime | None = None,
    ) -> list[EnqueueResult]:
        """One poll's result in one transaction: merge ``progress`` (visit → step →
        entry) into the source's visits, enqueue ``messages`` linked to their
        visits, and move the source's cursor. An entry never replaces one that
        is further along (a step already sent stays sent)."""

        def work() -> list[EnqueueResult]:
            when = self.unit.now(now)
            keys = set(progress) | {m.visit for m in messages if m.visit is not None}
            rows = self.progress.locked_visits(source, keys, when)
            self.progress.merge_sources(rows, progress, when)
            ids = {key: row.id for key, row in rows.items()}
            results = self.enqueuer.enqueue(list(messages), actor, when, ids) if messages else []
            if cursor is not None:
                self._set_cursor(source, cursor, when)
            return results

        return self.unit.write(work)

    def get_cursor(self, source: str) -> str | None:
        PollCursor = self.m.PollCursor

        def work() -> str | None:
            row = PollCursor.get_or_none(PollCursor.source == source)
            return None if row is None else row.value

        return self.unit.read(work)

    def _set_cursor(self, source: str, value: str, now: datetime) -> None:
        PollCursor = self.m.PollCursor
        PollCursor.insert(source=source, value=value, updated_at=now).on_conflict(
            conflict_target=[PollCursor.source],
            update={PollCursor.value: value, PollCursor.updated_at: now},
        ).execute()


def _view(row: Visit) -> VisitView:
    return VisitView(row.kodebooking, row.source, row.task_progress, row.created_at, row.updated_at)
