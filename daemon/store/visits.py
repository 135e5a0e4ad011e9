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

from daemon.domain.messages import EnqueueResult, NewMessage, Progress
from daemon.domain.views import VisitView
from daemon.store.base import StoreBase, chunked
from daemon.store.models import Message, PollCursor, Visit

SOURCE_FACTS = "source"  # the part of an entry an outcome keeps
_FILLABLE = (None, "queued", "held")  # steps a source's entry may (re)write


class VisitOps(StoreBase):
    def find_visits(self, kodebooking: str, source: str | None = None) -> list[VisitView]:
        """The visits with this key (one per source that has it), or that source's."""

        def work() -> list[VisitView]:
            where = Visit.kodebooking == kodebooking
            if source is not None:
                where &= Visit.source == source
            return [_view(row) for row in Visit.select().where(where).order_by(Visit.source)]

        return self._read(work)

    def task_progress(self, source: str, visits: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The progress of those of the source's visits that are known, by key."""

        def work() -> dict[str, dict[str, Any]]:
            found: dict[str, dict[str, Any]] = {}
            for chunk in chunked(sorted(set(visits))):
                query = Visit.select(Visit.kodebooking, Visit.task_progress).where(
                    (Visit.source == source) & Visit.kodebooking.in_(list(chunk))
                )
                for row in query:
                    found[row.kodebooking] = row.task_progress
            return found

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
        """One poll's result in one transaction: merge ``progress`` (visit → step →
        entry) into the source's visits, enqueue ``messages`` linked to their
        visits, and move the source's cursor. An entry never replaces one that
        is further along (a step already sent stays sent)."""

        def work() -> list[EnqueueResult]:
            when = self._now(now)
            keys = set(progress) | {m.visit for m in messages if m.visit is not None}
            rows = self._locked_visits(source, keys, when)
            self._merge(rows, progress, when, outcome=False)
            ids = {key: row.id for key, row in rows.items()}
            results = self._enqueue(list(messages), actor, when, ids) if messages else []
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

    def _locked_visits(self, source: str, keys: Iterable[str], now: datetime) -> dict[str, Visit]:
        """The source's visits with these keys, created where missing, locked."""
        wanted = sorted(set(keys))
        found: dict[str, Visit] = {}
        for chunk in chunked(wanted):
            query = Visit.select().where(
                (Visit.source == source) & Visit.kodebooking.in_(list(chunk))
            )
            if self.postgres:
                query = query.for_update()
            found.update({row.kodebooking: row for row in query})
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
            query = Visit.select().where(
                (Visit.source == source) & Visit.kodebooking.in_(list(chunk))
            )
            if self.postgres:
                query = query.for_update()
            found.update({row.kodebooking: row for row in query})
        return found

    def _merge(
        self,
        rows: Mapping[str, Visit],
        progress: Mapping[str, Mapping[str, dict[str, Any]]],
        now: datetime,
        outcome: bool,
    ) -> None:
        for key, steps in progress.items():
            row = rows.get(key)
            if row is None:
                continue
            current = row.task_progress or {}
            merged = dict(current)
            for step, entry in steps.items():
                previous = current.get(step)
                if outcome:
                    facts = previous.get(SOURCE_FACTS) if isinstance(previous, dict) else None
                    merged[step] = {**entry, SOURCE_FACTS: facts} if facts else entry
                elif not isinstance(previous, dict) or previous.get("status") in _FILLABLE:
                    merged[step] = entry
            if merged != current:
                Visit.update(task_progress=merged, updated_at=now).where(
                    Visit.id == row.id
                ).execute()
                row.task_progress = merged

    def _merge_message_progress(self, progress: Mapping[int, Progress], now: datetime) -> None:
        """Merge delivery outcomes' entries into the visits of their messages."""
        visit_of: dict[int, int] = {}
        for chunk in chunked(sorted(progress)):
            query = Message.select(Message.id, Message.visit_id).where(
                Message.id.in_(list(chunk)) & Message.visit_id.is_null(False)
            )
            visit_of.update(dict(query.tuples()))
        if not visit_of:
            return
        rows: dict[int, Visit] = {}
        for chunk in chunked(sorted(set(visit_of.values()))):
            query = Visit.select().where(Visit.id.in_(list(chunk)))
            if self.postgres:
                query = query.for_update()
            rows.update({row.id: row for row in query})
        by_visit: dict[str, dict[str, dict[str, Any]]] = {}
        keyed: dict[str, Visit] = {}
        for message_id, (step, entry) in sorted(progress.items()):
            row = rows.get(visit_of.get(message_id, -1))
            if row is not None:
                name = str(row.id)
                keyed[name] = row
                by_visit.setdefault(name, {})[step] = entry
        self._merge(keyed, by_visit, now, outcome=True)


def _view(row: Visit) -> VisitView:
    return VisitView(row.kodebooking, row.source, row.task_progress, row.created_at, row.updated_at)
