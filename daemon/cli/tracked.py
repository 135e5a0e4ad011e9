"""``outboxd visits`` and ``outboxd receipts``: the visits that cannot go on and
the partners' callbacks as received (the steps of ``daemon.operator.tracked`` the
API's ``/api/v1/visits`` and ``/api/v1/receipts`` take)."""

from __future__ import annotations

import argparse
import json
from zoneinfo import ZoneInfo

from daemon.cli.common import operate, settings_of
from daemon.domain.tracking import VISIT_TROUBLES
from daemon.operator import tracked
from daemon.operator.shapes import visit_json
from daemon.operator.summaries import printable


def cmd_visits(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    kinds = tuple(dict.fromkeys(args.problem or VISIT_TROUBLES))
    found, following = operate(
        settings,
        lambda op: tracked.troubled_visits(op, kinds, args.limit, args.before, args.source),
    )
    zone = ZoneInfo(settings.timezone)
    if args.json:
        items = [{"id": i, **visit_json(v, zone)} for i, v in found]
        print(json.dumps({"items": items, "next": following}, indent=2))
        return 0
    for i, visit in found:
        print(printable(f"{i:>6}  {tracked.visit_line(visit, zone)}"))
    if not found:
        print("no visit is held, failed or cancelled")
    print(f"next: --before {following}" if following else "next: none (the last page)")
    return 0


def cmd_receipts(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    found = operate(
        settings,
        lambda op: tracked.receipts(op, args.webhook, args.result, args.limit, args.before),
    )
    zone = ZoneInfo(settings.timezone)
    following = found[-1].id if len(found) == args.limit else None
    if args.json:
        items = [tracked.receipt_json(r, zone) for r in found]
        print(json.dumps({"items": items, "next": following}, indent=2))
        return 0
    for r in found:
        print(printable(tracked.receipt_line(r, zone)))
    if not found:
        print("no receipts")
    print(f"next: --before {following}" if following else "next: none (the last page)")
    return 0
