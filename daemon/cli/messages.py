"""The commands on messages and visits: enqueue, stats, retry, cancel, resend, visit."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import NamedTuple
from zoneinfo import ZoneInfo

from daemon.cli.common import open_store, read_payload, settings_of
from daemon.cli.errors import EX_DATAERR, EX_USAGE, CliError
from daemon.cli.selectors import selector_of
from daemon.domain.clock import utcnow
from daemon.domain.errors import Refused
from daemon.domain.statuses import SENDING
from daemon.domain.units import parse_duration
from daemon.domain.views import OperatorResult
from daemon.operator.enqueue import Handed, kind_of, new_message
from daemon.operator.shapes import visit_json
from daemon.operator.summaries import stats_json, stats_rows, stats_table, visit_lines
from daemon.store.sync import Store


def _window(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise CliError(f"--window: {exc}", EX_USAGE) from None
    if seconds <= 0:
        raise CliError(f"--window: {text!r} is no time at all: give one such as 1h", EX_USAGE)
    return seconds


def _left(result: OperatorResult) -> None:
    if result.skipped:
        parts = ", ".join(
            f"{n} {'being sent' if status == SENDING else status}"
            for status, n in sorted(result.skipped.items())
        )
        print(f"left as they are: {parts}")


def _report_operation(verbs: Verbs, result: OperatorResult) -> int:
    if result.dry_run:
        print(f"would {verbs.base} {result.matched} message(s) (dry run: nothing changed)")
        if result.sample:
            more = " …" if result.matched > len(result.sample) else ""
            print("ids: " + ", ".join(map(str, result.sample)) + more)
    else:
        print(f"{verbs.done} {len(result.changed) or result.matched} message(s)")
        if result.changed and len(result.changed) <= 50:
            print("ids: " + ", ".join(map(str, result.changed)))
    _left(result)
    if result.missing:
        print("not found: " + ", ".join(map(str, result.missing)), file=sys.stderr)
        return EX_DATAERR
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    try:
        kind = kind_of(settings, args.channel, args.kind)  # before the payload is read
        message = new_message(
            settings,
            Handed(
                args.channel, args.key, read_payload(args.payload), kind, args.after, args.group
            ),
        )
    except Refused as exc:
        raise CliError(str(exc), EX_USAGE if exc.kind == "usage" else EX_DATAERR) from None
    store = open_store(settings)
    try:
        result = store.enqueue(message, actor="cli")
    finally:
        store.close()
    if args.json:
        print(json.dumps({"id": result.id, "created": result.created, "status": result.status}))
    elif result.created:
        print(f"{result.id} new")
    else:
        print(f"{result.id} exists (status {result.status}); not enqueued again")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    window = _window(args.window)
    settings = settings_of(args)
    store = open_store(settings)
    try:
        now = utcnow()
        rows = stats_rows(store.stats(now=now, window=window), list(settings.channels))
    finally:
        store.close()
    if args.json:
        print(json.dumps(stats_json(rows, window, now.isoformat()), indent=2))
    else:
        print("\n".join(stats_table(rows, window)))
    return 0


class Verbs(NamedTuple):
    base: str  # retry
    done: str  # retried
    doing: str  # retrying


def _operator_command(
    verbs: Verbs, operation: Callable[[Store], Callable[..., OperatorResult]]
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        settings = settings_of(args)
        selector = selector_of(args, settings)
        if selector.empty:
            raise CliError(
                "select messages with --id, or --channel/--status/--kind/--key/--since/--until",
                EX_USAGE,
            )
        store = open_store(settings)
        try:
            result = operation(store)(
                selector,
                actor=f"cli:{os.environ.get('USER', 'operator')}",
                dry_run=args.dry_run,
                known_channels=set(settings.channels),
            )
            if result.operation is not None:
                return _run_operation(store, verbs, result)
        finally:
            store.close()
        return _report_operation(verbs, result)

    return command


def _run_operation(store: Store, verbs: Verbs, result: OperatorResult) -> int:
    """A bulk operation, to its end: a batch a transaction, a line a batch."""
    assert result.operation is not None
    print(
        f"{verbs.doing} {result.matched} message(s) in batches (operation {result.operation})",
        flush=True,
    )
    while True:
        view = store.advance_operation(result.operation)
        if view is None:  # removed under us: nothing more to do
            break
        print(f"  {view.done} of {view.matched}", flush=True)
        if view.finished:
            print(f"{verbs.done} {view.done} message(s)")
            break
    _left(result)
    return 0


def cmd_visit(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store = open_store(settings)
    try:
        visits = store.find_visits(args.kodebooking, args.source)
    finally:
        store.close()
    if not visits:
        where = f" from source {args.source!r}" if args.source else ""
        raise CliError(f"no visit with kodebooking {args.kodebooking!r}{where}", EX_DATAERR)
    if len(visits) > 1 and not args.json:
        sources = ", ".join(v.source for v in visits)
        raise CliError(
            f"kodebooking {args.kodebooking!r} is a visit of several sources ({sources}): "
            "name one with --source",
            EX_USAGE,
        )
    if args.json:
        print(
            json.dumps(
                [visit_json(v) for v in visits] if len(visits) > 1 else visit_json(visits[0]),
                indent=2,
            )
        )
    else:
        print("\n".join(visit_lines(visits[0], ZoneInfo(settings.timezone))))
    return 0


cmd_retry = _operator_command(Verbs("retry", "retried", "retrying"), lambda s: s.retry)
cmd_cancel = _operator_command(Verbs("cancel", "cancelled", "cancelling"), lambda s: s.cancel)
cmd_resend = _operator_command(Verbs("resend", "resent", "resending"), lambda s: s.resend)
