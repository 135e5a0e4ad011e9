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
from daemon.domain.limits import LIST_WINDOW, MAX_PAGE
from daemon.domain.selection import MessageFilter
from daemon.domain.units import format_duration
from daemon.domain.views import EventView, MessagePage, MessageTimeline
from daemon.operator import messages as ops
from daemon.operator.shapes import page_json, payload_text, timeline_json
from daemon.operator.summaries import printable


def _when(value: datetime | None, tz: tzinfo) -> str:
    return "-" if value is None else f"{value.astimezone(tz):%Y-%m-%d %H:%M:%S}"


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
    window = (
        "" if selector.since else f" (the last {format_duration(LIST_WINDOW)}: --since for more)"
    )
    print(f"created since {_when(page.since, tz)}{window}")
    print(f"next: --cursor {page.next}" if page.next else "next: none (the last page)")
    return 0


def _event_line(e: EventView, tz: tzinfo) -> str:
    change = e.to_status if e.from_status is None else f"{e.from_status} → {e.to_status}"
    line = f"  {_when(e.at, tz)}  {change} by {e.actor}"
    details = dict(e.details or {})
    said = [f"{k} {details.pop(k)}" for k in ("action", "error", "audit") if k in details]
    said += [f"{k} {v}" for k, v in sorted(details.items())]
    return printable(line + (": " + ", ".join(said) if said else ""))


def timeline_lines(t: MessageTimeline, tz: tzinfo) -> list[str]:
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
        ("response", t.response or "-"),
        ("payload", f"{len(t.payload)} bytes" + ("" if text is not None else " (not UTF-8)")),
    ]
    lines = [f"message {t.id}: channel {t.channel}, kind {t.kind}, key {t.key}"]
    lines += [f"  {name + ':':<14}{value}" for name, value in facts]
    lines.append("timeline:")
    lines += [_event_line(e, tz) for e in t.events]
    lines.append("operator actions:" if t.actions else "operator actions: none")
    lines += [
        f"  {_when(a.at, tz)}  {a.action} by {a.actor} (audit {a.id}): {a.target}, "
        f"{a.changed} changed"
        for a in t.actions
    ]
    return [printable(line) for line in lines]


def cmd_show(args: argparse.Namespace) -> int:
    wanted = message_id(args.id, "ID")
    settings = settings_of(args)
    timeline = operate(settings, lambda op: ops.timeline(op, wanted))
    if args.json:
        print(json.dumps(timeline_json(timeline), indent=2))
    else:
        print("\n".join(timeline_lines(timeline, ZoneInfo(settings.timezone))))
    return 0
