"""``outboxd messages list | show``: the outbox as an operator reads it, a page
of messages newest first, or one message with its timeline (the steps of
``daemon.operator.messages`` the API's listing and message take)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from daemon.cli.common import operate, settings_of
from daemon.cli.errors import EX_USAGE, CliError
from daemon.cli.selectors import filter_of, message_id
from daemon.domain.clock import shown
from daemon.domain.limits import LIST_WINDOW, MAX_PAGE
from daemon.domain.selection import MessageFilter
from daemon.domain.units import format_duration
from daemon.domain.views import MessagePage, MessageTimeline
from daemon.operator import messages as ops
from daemon.operator.shapes import page_json, payload_text, timeline_json
from daemon.operator.summaries import printable
from daemon.operator.words import action_text, events_text, hl7_lines


def _when(value: datetime | None, tz: tzinfo) -> str:
    return shown(value, tz)


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
        raise CliError(f"--limit: {text!r} is not a number from 1 to {MAX_PAGE}", EX_USAGE)
    return int(text)


def page_table(page: MessagePage, tz: tzinfo) -> list[str]:
    header = ["id", "channel", "kind", "key", "status", "attempts", "created", "updated"]
    rows = [header] + [
        [
            str(m.id),
            m.channel,
            m.kind,
            m.key,
            m.status,
            str(m.attempts),
            _when(m.created_at, tz),
            _when(m.updated_at, tz),
        ]
        for m in page.items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {0, 5}
    return [
        printable(
            "  ".join(
                cell.rjust(w) if i in numeric else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        for row in rows
    ]


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    selector = filter_of(args, settings) or MessageFilter()
    limit = _limit(args.limit)
    page = operate(settings, lambda op: ops.listing(op, selector, limit, args.cursor))
    if args.json:
        print(json.dumps(page_json(page), indent=2))
        return 0
    tz = ZoneInfo(settings.timezone)
    if page.items:
        print("\n".join(page_table(page, tz)))
    else:
        print("no messages")
    if page.since is None:
        print("searched: every message stored, newest stored first")
    else:
        window = (
            ""
            if selector.since
            else f" (the last {format_duration(LIST_WINDOW)}: --since for more)"
        )
        print(f"created since {_when(page.since, tz)}{window}")
    print(f"next: --cursor {page.next}" if page.next else "next: none (the last page)")
    return 0


def _text_block(name: str, text: str | None, by_field: bool) -> list[str]:
    """A payload or an answer: HL7 one segment a line (``by_field``: each field
    under it with its position), other text as it is; lines indented."""
    if text is None:
        return []
    lines = hl7_lines(text, by_field)
    if lines is None:
        lines = text.splitlines() or [""]
    return [f"{name}:"] + ["  " + printable(line) for line in lines]


def timeline_lines(t: MessageTimeline, tz: tzinfo, by_field: bool = False) -> list[str]:
    text = payload_text(t.payload)
    lease = f"{t.lease_owner} until {_when(t.lease_expires_at, tz)}" if t.lease_owner else "-"
    facts: list[tuple[str, Any]] = [
        ("status", t.status),
        ("attempts", t.attempts),
        ("next attempt", _when(t.next_attempt_at, tz)),
        ("created", _when(t.created_at, tz)),
        ("updated", _when(t.updated_at, tz)),
        ("sent", _when(t.sent_at, tz)),
        ("lease", lease),
        ("after", t.after_id or "-"),
        ("group", t.group_key or "-"),
        ("visit", t.visit_id or "-"),
        ("last error", t.last_error or "-"),
        ("payload", f"{len(t.payload)} bytes" + ("" if text is not None else " (not UTF-8)")),
    ]
    lines = [f"message {t.id}: channel {t.channel}, kind {t.kind}, key {t.key}"]
    lines += [printable(f"  {name + ':':<14}{value}") for name, value in facts]
    lines += _text_block("payload", text, by_field)
    lines += _text_block("peer's answer", t.response, by_field) or ["peer's answer: none"]
    lines.append("timeline:")
    said = events_text(t.events, tz)
    lines += [printable(f"  {_when(e.at, tz)}  {s}") for e, s in zip(t.events, said, strict=True)]
    lines.append("operator actions:" if t.actions else "operator actions: none")
    lines += [printable(f"  {_when(a.at, tz)}  {action_text(a)}") for a in t.actions]
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    wanted = message_id(args.id, "ID")
    settings = settings_of(args)
    timeline = operate(settings, lambda op: ops.timeline(op, wanted))
    if args.json:
        print(json.dumps(timeline_json(timeline, ZoneInfo(settings.timezone)), indent=2))
    else:
        print("\n".join(timeline_lines(timeline, ZoneInfo(settings.timezone), args.fields)))
    return 0
