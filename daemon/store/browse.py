"""Reading the outbox as an operator does: a listing of messages newest first, a
page at a time, and one message with its whole timeline."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from daemon.domain.limits import LIST_WINDOW, MAX_PAGE
from daemon.domain.selection import MessageFilter, OperatorRefused
from daemon.domain.views import AuditView, EventView, MessagePage, MessageSummary, MessageTimeline
from daemon.store.models import db_timestamp
from daemon.store.selection import Selection, check_filter, decode_cursor, encode_cursor
from daemon.store.unit import Unit


class Browse:
    def __init__(self, unit: Unit, selection: Selection) -> None:
        self.unit = unit
        self.m = unit.models
        self.sql = unit.sql
        self.selection = selection

    def list_messages(
        self,
        selector: MessageFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
        window: float = LIST_WINDOW,
        known_channels: Collection[str] | None = None,
        now: datetime | None = None,
    ) -> MessagePage:
        """Messages matching ``selector``, newest first (by creation time, then
        id), at most ``limit`` (1 to 500). ``cursor`` (a page's ``next``) goes on
        after that page's last item. Without ``selector.since`` the listing covers
        the ``window`` seconds before now (the first page's now, for the pages
        after it), so it never reads the whole table; there is no total count.
        A search (``selector.text`` or ``fields``) is read from its index, newest
        stored first (by id), over every message stored unless ``since`` is given."""
        selector = selector or MessageFilter()
        if selector.ids:
            raise OperatorRefused(
                "a listing takes a filter, not ids: show a message by its id", "ids"
            )
        check_filter(selector, known_channels)
        if not 1 <= limit <= MAX_PAGE:
            raise OperatorRefused(f"limit must be 1 to {MAX_PAGE}, not {limit}", "limit")
        if window <= 0:
            raise OperatorRefused("the listing window must be longer than no time")
        after = decode_cursor(cursor) if cursor else None
        since = selector.since
        if since is None and after is not None:
            since = after[2]
            selector = replace(selector, since=since)
        elif since is None and not selector.searched:
            # a whole minute: a listing asked again within the minute is the same
            # (its ETag holds), and its window moves on a minute at a time
            start = self.unit.now(now) - timedelta(seconds=window)
            since = start.replace(second=0, microsecond=0)
            selector = replace(selector, since=since)

        Message = self.m.Message

        def work() -> MessagePage:
            query = self._searched(selector, after) if selector.searched else None
            if query is None:
                clause = self.selection.where(selector)
                if after is not None:
                    last = pw.Tuple(db_timestamp(after[0]), after[1])  # stored form
                    clause = clause & (pw.Tuple(Message.created_at, Message.id) < last)
                query = (
                    Message.select(*self._columns())
                    .where(clause)
                    .order_by(Message.created_at.desc(), Message.id.desc())
                )
            items = [
                MessageSummary(
                    id=row.id,
                    channel=row.channel,
                    kind=row.kind,
                    key=row.key,
                    status=row.status,
                    attempts=row.attempts,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                    next_attempt_at=row.next_attempt_at,
                    sent_at=row.sent_at,
                    last_error=row.last_error,
                )
                for row in query.limit(limit + 1)
            ]
            more = len(items) > limit
            items = items[:limit]
            following = encode_cursor(items[-1].created_at, items[-1].id, since) if more else None
            return MessagePage(items=items, next=following, since=since)

        return self.unit.read(work)

    def _columns(self) -> list[pw.Field]:
        Message = self.m.Message
        return [
            Message.id, Message.channel, Message.kind, Message.key, Message.status,
            Message.attempts, Message.created_at, Message.updated_at, Message.next_attempt_at,
            Message.sent_at, Message.last_error,
        ]  # fmt: skip

    def _searched(
        self, selector: MessageFilter, after: tuple[datetime, int, datetime | None] | None
    ) -> pw.Select | None:
        """A search's listing, newest stored first (by id): read from the fields'
        primary key (name, value, message_id) when a field is asked for, else
        from the text index where it hands matches out in id order (SQLite's
        FTS5); None: the WHERE clause alone (PostgreSQL's planner chooses between
        the trigram index and the messages newest first)."""
        Message = self.m.Message
        source: tuple[Any, pw.ColumnBase, pw.ColumnBase] | None = None
        rest = selector
        if selector.fields:
            (name, value), others = selector.fields[0], selector.fields[1:]
            Field = self.m.MessageField.alias("chosen")
            source = (Field, Field.message, (Field.name == name) & (Field.value == value))
            rest = replace(selector, fields=others)
        elif selector.text:
            source = self.sql.text_source(selector.text)
            if source is not None:
                rest = replace(selector, text=None)
        clause = self.selection.where(rest)
        if source is None:
            if after is not None:
                clause = clause & (Message.id < after[1])
            return Message.select(*self._columns()).where(clause).order_by(Message.id.desc())
        table, ids, chosen = source
        if after is not None:
            chosen = chosen & (ids < after[1])
        return (
            Message.select(*self._columns())
            .from_(table)
            .join(Message, pw.JOIN.CROSS)  # the source first: SQLite keeps this order
            .where((ids == Message.id) & chosen & clause)
            .order_by(ids.desc())
        )

    def message_timeline(self, message_id: int) -> MessageTimeline | None:
        """One message: its fields and payload, every status event in order (each
        attempt's error or the peer's response is in the event's details), and the
        operator actions that changed it (the audit entries its events name).
        None when there is no such message."""
        Message, StatusEvent, AuditEntry = self.m.Message, self.m.StatusEvent, self.m.AuditEntry

        def work() -> MessageTimeline | None:
            row = Message.select().where(Message.id == message_id).first()
            if row is None:
                return None
            events = [
                EventView(
                    id=e.id,
                    at=e.at,
                    from_status=e.from_status,
                    to_status=e.to_status,
                    actor=e.actor,
                    details=e.details,
                )
                for e in StatusEvent.select()
                .where(StatusEvent.message == message_id)
                .order_by(StatusEvent.id)
            ]
            audit_ids = sorted(
                {
                    e.details["audit"]
                    for e in events
                    if isinstance(e.details, dict) and isinstance(e.details.get("audit"), int)
                }
            )
            actions = (
                [
                    AuditView(
                        id=a.id,
                        at=a.at,
                        actor=a.actor,
                        action=a.action,
                        target=a.target,
                        details=a.details,
                        changed=a.changed,
                    )
                    for a in AuditEntry.select()
                    .where(AuditEntry.id.in_(audit_ids))
                    .order_by(AuditEntry.id)
                ]
                if audit_ids
                else []
            )
            return MessageTimeline(
                id=row.id,
                channel=row.channel,
                kind=row.kind,
                key=row.key,
                status=row.status,
                attempts=row.attempts,
                payload=bytes(row.payload),
                next_attempt_at=row.next_attempt_at,
                lease_owner=row.lease_owner,
                lease_expires_at=row.lease_expires_at,
                last_error=row.last_error,
                response=row.response,
                after_id=row.after_id,
                group_key=row.group_key,
                visit_id=row.visit_id,
                created_at=row.created_at,
                updated_at=row.updated_at,
                sent_at=row.sent_at,
                events=events,
                actions=actions,
            )

        return self.unit.read(work)
