"""Storing new messages: checked, inserted in chunks (a ``(channel, key)`` already
stored is not stored again), their prerequisites linked, the dispatchers woken.
Used by ``enqueue`` and by a source's poll (``sync_visits``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from daemon.domain.limits import MESSAGE_TEXT, text_problem
from daemon.domain.messages import EnqueueResult, InvalidMessage, NewMessage, UnknownPrerequisite
from daemon.domain.search import FIELD_NAMES, keepable
from daemon.domain.statuses import PENDING
from daemon.store.models import db_timestamp, tuples
from daemon.store.sql.base import NewRow, chunked
from daemon.store.unit import Unit

_OPTIONAL = ("group_key", "after_key")


def check_name(what: str, value: object, limit: int, index: int | None = None) -> None:
    """A key, kind, channel or group as ``daemon.domain.limits.text_problem`` has
    it; else ``InvalidMessage`` naming the field (and the message of a batch)."""
    problem = text_problem(value, limit)
    if problem is not None:
        raise InvalidMessage(f"{what} {problem}", what, index)


def checked(message: NewMessage, index: int | None = None) -> NewMessage:
    for name, limit in MESSAGE_TEXT.items():
        value = getattr(message, name)
        if value is None and name in _OPTIONAL:
            continue
        check_name(name, value, limit, index)
    if isinstance(message.payload, str):
        raise InvalidMessage("payload must be bytes (encode text first)", "payload", index)
    for name, value in message.fields:
        if name not in FIELD_NAMES or not keepable(value):
            raise InvalidMessage(f"search field {name}={value!r} cannot be kept", "fields", index)
    if message.after_key is not None and message.after_key == message.key:
        raise InvalidMessage(
            f"message {message.key!r} cannot be its own prerequisite", "after_key", index
        )
    return message


class Enqueuer:
    """Inserts checked messages inside the caller's unit of work."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.sql = unit.sql
        self.m = unit.models

    def enqueue(
        self,
        batch: Sequence[NewMessage],
        actor: str,
        now: datetime,
        visit_ids: Mapping[str, int] | None = None,
    ) -> list[EnqueueResult]:
        """Store ``batch`` in order (a prerequisite may be an earlier message of it),
        each linked to its visit when ``visit_ids`` has it; one result per message."""
        ids: dict[tuple[str, str], int] = self._ids_by_key(
            {(m.channel, m.after_key) for m in batch if m.after_key}
        )
        self._check_ids_exist({m.after_id for m in batch if m.after_id is not None})
        created: dict[tuple[str, str], int] = {}
        stamp = db_timestamp(now)
        for chunk in chunked(batch):
            rows = self.sql.insert_messages(self._rows(chunk, ids, visit_ids, now), actor, stamp)
            for id_, channel, key in rows:
                created[(channel, key)] = id_
        ids.update(created)
        fields = [
            (name, value, created[(m.channel, m.key)])
            for m in batch
            if m.fields and (m.channel, m.key) in created
            for name, value in m.fields
        ]
        if fields:
            self.sql.insert_fields(fields)
        self._link_batch_prerequisites(batch, created, ids)
        self.unit.notify(
            m.channel
            for m in batch
            if (m.channel, m.key) in created and (m.not_before is None or m.not_before <= now)
        )
        existing = self._rows_by_key(
            {(m.channel, m.key) for m in batch if (m.channel, m.key) not in created}
        )
        results = []
        reported: set[tuple[str, str]] = set()
        for m in batch:
            pair = (m.channel, m.key)
            if pair in created:
                results.append(EnqueueResult(created[pair], pair not in reported, PENDING))
                reported.add(pair)
            else:
                found_id, status = existing[pair]
                results.append(EnqueueResult(found_id, False, status))
        return results

    @staticmethod
    def _rows(
        chunk: Sequence[NewMessage],
        ids: Mapping[tuple[str, str], int],
        visit_ids: Mapping[str, int] | None,
        now: datetime,
    ) -> list[NewRow]:
        stamp = db_timestamp(now)
        rows: list[NewRow] = []
        for m in chunk:
            after = m.after_id
            if after is None and m.after_key:
                after = ids.get((m.channel, m.after_key))
            due = db_timestamp(max(m.not_before, now)) if m.not_before else stamp
            visit = visit_ids.get(m.visit) if visit_ids and m.visit is not None else None
            rows.append((m.channel, m.kind, m.key, m.payload, due, after, m.group_key, visit))
        return rows

    def _link_batch_prerequisites(
        self,
        batch: Sequence[NewMessage],
        created: Mapping[tuple[str, str], int],
        ids: Mapping[tuple[str, str], int],
    ) -> None:
        """Set ``after`` on new rows whose prerequisite came in the same batch."""
        Message = self.m.Message
        for index, m in enumerate(batch):
            if not m.after_key or m.after_id is not None:
                continue
            target = ids.get((m.channel, m.after_key))
            if target is None:
                raise UnknownPrerequisite(
                    f"prerequisite {m.after_key!r} of {m.key!r} does not exist "
                    f"in channel {m.channel!r}",
                    "after_key",
                    index,
                )
            own = created.get((m.channel, m.key))
            if own is not None:
                Message.update(after=target).where(
                    (Message.id == own) & Message.after.is_null()
                ).execute()

    def _ids_by_key(self, pairs: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str], int]:
        return {pair: row[0] for pair, row in self._rows_by_key(pairs).items()}

    def _rows_by_key(
        self, pairs: Iterable[tuple[str, str | None]]
    ) -> dict[tuple[str, str], tuple[int, str]]:
        Message = self.m.Message
        by_channel: dict[str, list[str]] = {}
        for channel, maybe_key in pairs:
            if maybe_key is not None:
                by_channel.setdefault(channel, []).append(maybe_key)
        found: dict[tuple[str, str], tuple[int, str]] = {}
        for channel, keys in by_channel.items():
            for chunk in chunked(sorted(set(keys))):
                query = Message.select(Message.id, Message.key, Message.status).where(
                    (Message.channel == channel) & Message.key.in_(list(chunk))
                )
                for id_, key, status in tuples(query):
                    found[(channel, key)] = (id_, status)
        return found

    def _check_ids_exist(self, ids: set[int]) -> None:
        if not ids:
            return
        Message = self.m.Message
        query = Message.select(Message.id).where(Message.id.in_(list(ids)))
        missing = sorted(ids - {r[0] for r in tuples(query)})
        if missing:
            raise UnknownPrerequisite(
                f"prerequisite message id {missing[0]} does not exist", "after_id"
            )
