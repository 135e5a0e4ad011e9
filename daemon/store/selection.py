"""Which messages a listing or an operator action is about: a ``MessageFilter`` as
a WHERE clause the indexes serve, as JSON (for the audit and bulk operations)
and back, and the listing's cursor."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import peewee as pw

from daemon.domain.limits import is_id
from daemon.domain.search import FIELD_NAMES
from daemon.domain.selection import InvalidCursor, MessageFilter, check_selection
from daemon.store.models import db_timestamp, read_timestamp
from daemon.store.unit import Unit

check_filter = check_selection  # the store refuses what the rules refuse, whoever calls


class Selection:
    """A ``MessageFilter`` as a WHERE clause on one store's messages."""

    def __init__(self, unit: Unit) -> None:
        self.sql = unit.sql
        self.m = unit.models

    def where(self, selector: MessageFilter) -> pw.ColumnBase:
        """The filter as a WHERE clause (every part of it one an index serves, with
        the channel: (channel, status, created_at, id), (channel, created_at, id),
        (channel, key); without: (created_at, id); a field by the fields' primary
        key, the text by the text index)."""
        Message = self.m.Message
        clauses: list[pw.ColumnBase] = []
        if selector.ids:
            clauses.append(Message.id.in_(list(selector.ids)))
        if selector.channel:
            clauses.append(Message.channel == selector.channel)
        if selector.statuses:
            clauses.append(Message.status.in_(list(selector.statuses)))
        if selector.kind:
            clauses.append(Message.kind == selector.kind)
        if selector.key_prefix:
            clauses.append(self.sql.key_prefix(Message.key, selector.key_prefix))
        if selector.since:
            clauses.append(Message.created_at >= selector.since)
        if selector.until:
            clauses.append(Message.created_at < selector.until)
        for name, value in selector.fields:
            clauses.append(self.field_match(name, value))
        if selector.text:
            clauses.append(self.sql.text_match(Message, selector.text))
        expr: pw.ColumnBase = clauses[0] if clauses else pw.SQL("1 = 1")
        for clause in clauses[1:]:
            expr = expr & clause
        return expr

    def field_match(self, name: str, value: str) -> pw.ColumnBase:
        """The message was stored with field ``name`` = ``value`` (one lookup of the
        fields' primary key (name, value, message_id) per message)."""
        Message, Field = self.m.Message, self.m.MessageField.alias()
        found = Field.select(pw.SQL("1")).where(
            (Field.name == name) & (Field.value == value) & (Field.message == Message.id)
        )
        return pw.fn.EXISTS(found)


def filter_json(selector: MessageFilter) -> dict[str, Any]:
    """The selector as the audit and a bulk operation record it."""
    out: dict[str, Any] = {}
    if selector.ids:
        out["ids"] = list(selector.ids)
    if selector.channel:
        out["channel"] = selector.channel
    if selector.statuses:
        out["statuses"] = list(selector.statuses)
    if selector.kind:
        out["kind"] = selector.kind
    if selector.key_prefix:
        out["key_prefix"] = selector.key_prefix
    if selector.since:
        out["since"] = selector.since.isoformat()
    if selector.until:
        out["until"] = selector.until.isoformat()
    if selector.text:
        out["q"] = selector.text
    for name, value in selector.fields:
        out[name] = value
    return out


def filter_from_json(data: dict[str, Any]) -> MessageFilter:
    def when(name: str) -> datetime | None:
        value = data.get(name)
        return None if value is None else read_timestamp(value)

    return MessageFilter(
        ids=tuple(data.get("ids", ())),
        channel=data.get("channel"),
        statuses=tuple(data.get("statuses", ())),
        since=when("since"),
        until=when("until"),
        kind=data.get("kind"),
        key_prefix=data.get("key_prefix"),
        text=data.get("q"),
        fields=tuple((name, data[name]) for name in FIELD_NAMES if name in data),
    )


def described(selector: MessageFilter) -> str:
    """The audit's target: ``messages 1, 2`` or ``messages where channel hie, …``."""
    if selector.ids:
        shown = ", ".join(map(str, selector.ids[:10]))
        return f"messages {shown}" + (" …" if len(selector.ids) > 10 else "")
    parts = [
        f"{k} {','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in filter_json(selector).items()
    ]
    return "messages where " + ", ".join(parts)


# --- the listing's cursor -----------------------------------------------------------


def encode_cursor(created_at: datetime, message_id: int, since: datetime | None) -> str:
    """An opaque cursor: the last item's (created_at, id) and the listing's
    lower bound (None: a search of everything), so the pages after the first
    keep the first page's window."""
    bound = None if since is None else db_timestamp(since)
    text = json.dumps([db_timestamp(created_at), message_id, bound])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int, datetime | None]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, message_id, since = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not is_id(message_id) or not isinstance(created, str):
            raise ValueError(cursor)
        if since is not None and not isinstance(since, str):
            raise ValueError(cursor)
        return read_timestamp(created), message_id, None if since is None else read_timestamp(since)
    except (ValueError, TypeError, binascii.Error, UnicodeError, OverflowError):
        raise InvalidCursor(
            f"not a listing cursor: {cursor[:40]!r} (pass the `next` of a page)"
        ) from None
