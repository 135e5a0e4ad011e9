"""The commands on messages and visits: enqueue (one, or a batch of JSON Lines),
stats, retry, cancel, resend, visit. Each runs a step of
``daemon.operator.messages``, as the control API's handlers do."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import NamedTuple
from zoneinfo import ZoneInfo

from daemon.cli.common import operate, read_input, read_payload, settings_of
from daemon.cli.errors import EX_DATAERR, EX_USAGE, CliError
from daemon.cli.selectors import NAMES, filter_of, message_ids
from daemon.domain.clock import utcnow
from daemon.domain.statuses import SENDING
from daemon.domain.units import parse_duration
from daemon.domain.views import OperationView, OperatorResult
from daemon.operator import messages as ops
from daemon.operator.base import Operator
from daemon.operator.bulk import carry_on
from daemon.operator.enqueue import Handed, kind_of, new_message
from daemon.operator.shapes import visit_json
from daemon.operator.summaries import printable, stats_json, stats_table, visit_lines

ENQUEUED_BY = "cli"  # the actor of an enqueued message's first status event
MESSAGE_OPTIONS = ("channel", "key", "after", "kind", "group")


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


# --- enqueue -----------------------------------------------------------------------------


def cmd_enqueue(args: argparse.Namespace) -> int:
    if args.batch is not None:
        return _enqueue_batch(args)
    if args.channel is None:
        raise CliError("--channel: required (or --batch FILE|-)", EX_USAGE)
    settings = settings_of(args)
    kind = kind_of(settings, args.channel, args.kind)  # before the payload is read
    handed = Handed(
        args.channel, args.key, read_payload(args.payload or "-"), kind, args.after, args.group
    )
    message = new_message(settings, handed)
    [result] = operate(settings, lambda op: ops.store_checked(op, [message]), ENQUEUED_BY)
    if args.json:
        print(json.dumps({"id": result.id, "created": result.created, "status": result.status}))
    elif result.created:
        print(f"{result.id} new")
    else:
        print(f"{result.id} exists (status {result.status}); not enqueued again")
    return 0


def _enqueue_batch(args: argparse.Namespace) -> int:
    """``--batch FILE|-``: JSON Lines, each a message as ``POST /api/v1/messages``
    takes it, stored ``MAX_BATCH`` to a transaction; what is refused is named by
    its line, the rest stored."""
    given = [f"--{name}" for name in MESSAGE_OPTIONS if getattr(args, name) is not None]
    if given or args.payload is not None:
        named = ", ".join(given + ([args.payload] if args.payload is not None else []))
        raise CliError(
            f"--batch reads each message's fields from its line: {named} cannot go with it",
            EX_USAGE,
        )
    settings = settings_of(args)
    lines = read_input(args.batch, "batch").split(b"\n")
    report = operate(settings, lambda op: ops.enqueue_lines(op, lines), ENQUEUED_BY)
    if args.json:
        refused = [{"line": r.line, "field": r.field, "reason": r.reason} for r in report.refused]
        print(json.dumps({"new": report.new, "duplicates": report.duplicates,
                          "refused": refused}))  # fmt: skip
    else:
        print(f"{report.new} new, {report.duplicates} duplicate(s), {len(report.refused)} refused")
    for r in report.refused:
        where = f"{r.field}: " if r.field else ""
        print(printable(f"line {r.line}: {where}{r.reason}"), file=sys.stderr)
    return EX_DATAERR if report.refused else 0


# --- stats, visit -------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    window = _window(args.window)
    settings = settings_of(args)
    now = utcnow()
    rows = operate(settings, lambda op: ops.stats(op, window, now))
    if args.json:
        print(json.dumps(stats_json(rows, window, now.isoformat()), indent=2))
    else:
        print("\n".join(stats_table(rows, window)))
    return 0


def cmd_visit(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    visits = operate(settings, lambda op: ops.visits(op, args.kodebooking, args.source))
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


# --- retry, cancel, resend ----------------------------------------------------------------


class Verbs(NamedTuple):
    base: str  # retry
    done: str  # retried
    doing: str  # retrying


def _operator_command(verbs: Verbs) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        settings = settings_of(args)
        selector = ops.selection(message_ids(args.id or []), filter_of(args, settings), NAMES)

        async def step(op: Operator) -> tuple[OperatorResult, OperationView | None]:
            result = await ops.act(op, verbs.base, selector, args.dry_run, NAMES)
            if result.operation is None:
                return result, None
            print(
                f"{verbs.doing} {result.matched} message(s) in batches "
                f"(operation {result.operation})",
                flush=True,
            )
            done = await carry_on(op.store, result.operation, _progress)
            return result, done

        result, done = operate(settings, step, reason=args.reason)
        if result.operation is None:
            return _report_operation(verbs, result)
        if done is not None:
            print(f"{verbs.done} {done.done} message(s)")
        _left(result)
        return 0

    return command


def _progress(view: OperationView) -> None:
    print(f"  {view.done} of {view.matched}", flush=True)


cmd_retry = _operator_command(Verbs("retry", "retried", "retrying"))
cmd_cancel = _operator_command(Verbs("cancel", "cancelled", "cancelling"))
cmd_resend = _operator_command(Verbs("resend", "resent", "resending"))
