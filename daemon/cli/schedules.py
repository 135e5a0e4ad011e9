"""The commands on schedules and their ledger: ``outboxd schedules list | show |
add | edit | remove | pause | resume | run | cancel | backfill | preview``,
``outboxd runs NAME`` and ``outboxd notifications``. What they change, they
change in the database the scheduler reads: a scheduler picks it up within
``roles.scheduler.sync_interval`` (a cancel within a second or so)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from daemon.cli.common import operate, parse_time, settings_of
from daemon.cli.errors import EX_DATAERR, EX_USAGE, CliError
from daemon.config.schedules import DefinitionError, read_definition, timing_of, zone_of
from daemon.config.settings import Settings
from daemon.domain import clock, jsontext
from daemon.domain.schedules import RunRow
from daemon.domain.units import format_duration
from daemon.operator import schedules as steps
from daemon.operator.base import Operator
from daemon.operator.schedules import EPSILON
from daemon.operator.summaries import printable
from daemon.scheduling.fires import Fire, Timing, next_fires

MAX_RUNS = 10_000  # runs `outboxd runs` may list


def _fire_line(fire: Fire) -> str:
    note = f"  ({fire.note})" if fire.note else ""
    return f"  {fire.local:%Y-%m-%d %H:%M:%S %Z}   {fire.at:%Y-%m-%d %H:%M:%S} UTC{note}"


# --- reading ---------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    out = operate(settings, lambda op: steps.schedule_listing(op, datetime.now(UTC)))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if not out:
        print("no schedules")
    for item in out:
        nxt = shown_at(item["next"]["at"], settings) if item["next"] else "-"
        last_run = item["last_run"]["status"] if item["last_run"] else "-"
        print(
            printable(
                f"{item['name']}: {item['job']}, {item['when']} ({item['timezone']}), "
                f"{item['state']}, next {nxt}, last run {last_run} [{item['origin']}]"
            )
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    now = datetime.now(UTC)
    shown = operate(settings, lambda op: steps.shown(op, args.name, now))
    if args.json:
        print(json.dumps(shown.detail, indent=2))
        return 0
    row, spec = shown.row, shown.spec
    print(printable(f"{row.name}: {spec.job}, {steps.when(spec)} ({zone_of(spec, settings)})"))
    origin = "the YAML file" if row.origin == "file" else "the CLI or the API"
    state = shown.detail["state"]
    print(printable(f"  {state}; from {origin}, revision {row.revision}"))
    if shown.detail["file_differs"]:
        print(f"  {steps.FILE_DIFFERS}")
    bound = f" (at most {spec.max_concurrent} at once)" if spec.max_concurrent else ""
    print(
        f"  overlap {spec.overlap}{bound}, catch up {format_duration(spec.catch_up)}, "
        f"retry up to {spec.retry.max_attempts} runs"
    )
    window = [
        f"from {spec.start_at.isoformat()}" if spec.start_at else "",
        f"until {spec.end_at.isoformat()}" if spec.end_at else "",
        f"{row.runs_made} of {spec.max_runs} runs made" if spec.max_runs else "",
    ]
    if any(window):
        print("  " + ", ".join(w for w in window if w))
    print("next fires:")
    for fire in [] if state.startswith("ended") else next_fires(timing_of(spec, settings), now, 5):
        print(_fire_line(fire))
    print("recent runs:")
    for run in shown.runs:
        print(printable(_run_line(run, ZoneInfo(settings.timezone))))
    return 0


def shown_at(iso: str, settings: Settings) -> str:
    """An ISO time of the API's shapes in the file's zone, labelled."""
    return clock.shown(datetime.fromisoformat(iso), ZoneInfo(settings.timezone))


def _run_line(run: RunRow, zone: ZoneInfo) -> str:
    took = ""
    if run.started_at and run.finished_at:
        took = f" in {format_duration((run.finished_at - run.started_at).total_seconds())}"
    why = f" — {run.error}" if run.error else (f" — {run.note}" if run.note else "")
    if run.status == "running" and run.cancel_requested_at is not None:
        why += f" — cancel asked for ({run.cancel_text})"
    return (
        f"  #{run.id} {clock.shown(run.fire_time, zone)} {run.trigger} attempt {run.attempt}: "
        f"{run.status}{took}{why}"
    )


def cmd_runs(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if not 1 <= args.limit <= MAX_RUNS:
        raise CliError(f"--limit: 1 to {MAX_RUNS:,}", EX_USAGE)
    statuses = tuple(dict.fromkeys(args.status or ()))
    runs = operate(
        settings,
        lambda op: steps.ledger(op, args.name, args.limit, statuses=statuses, removed_too=True),
    )
    if args.json:
        print(json.dumps([steps.run_json(r) for r in runs], indent=2))
    else:
        for run in runs:
            print(printable(_run_line(run, ZoneInfo(settings.timezone))))
        if not runs:
            print(f"no runs of {args.name} yet")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    now = datetime.now(UTC)
    if args.name:
        if args.cron or args.every:
            raise CliError("give a schedule's name, or --cron / --every, not both", EX_USAGE)
        spec = operate(settings, lambda op: steps.shown(op, args.name, now, runs=0)).spec
        timing = timing_of(spec, settings)
    else:
        timing = _adhoc_timing(args, settings)
    start = parse_time(args.since, timing.zone, "--from") if args.since else now
    if not 1 <= args.count <= 1000:
        raise CliError("--count: 1 to 1000", EX_USAGE)
    try:
        upcoming = next_fires(timing, start - EPSILON, args.count)  # a fire at --from too
    except OverflowError:
        raise CliError("--from: fires beyond the years 1 to 9999", EX_USAGE) from None
    if args.json:
        print(json.dumps([steps.fire_json(f) for f in upcoming], indent=2))
    else:
        for fire in upcoming:
            print(_fire_line(fire))
        if not upcoming:
            print("no fire: the expression matches no date")
    return 0


def _adhoc_timing(args: argparse.Namespace, settings: Settings) -> Timing:
    if bool(args.cron) == bool(args.every):
        raise CliError("give a schedule's name, or --cron EXPR or --every DURATION", EX_USAGE)
    fields: dict[str, Any] = {"job": "http", "options": {"url": "http://127.0.0.1/"}}
    fields["cron" if args.cron else "every"] = args.cron or args.every
    fields.update(_with(args.rules))
    if args.timezone:
        fields["timezone"] = args.timezone
    try:
        spec = read_definition(fields)
    except DefinitionError as exc:
        raise CliError(f"not a valid schedule: {exc}", EX_DATAERR) from None
    return timing_of(spec, settings)


# --- changing ---------------------------------------------------------------------------


def _with(pairs: list[str] | None) -> dict[str, Any]:
    """``--with KEY=VALUE``: a setting of the schedule, the value read as YAML."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--with {pair!r}: expected KEY=VALUE", EX_USAGE)
        try:
            out[key.strip()] = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            raise CliError(f"--with {pair!r}: the value is not YAML", EX_USAGE) from None
    return out


def _options(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = jsontext.loads(text)
    except jsontext.NotJson as exc:
        raise CliError(f"--options: not a JSON object: {exc}", EX_USAGE) from None
    if not isinstance(value, dict):
        raise CliError("--options: not a JSON object", EX_USAGE)
    return value


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the options give (``--with`` last: it may say any of them)."""
    fields: dict[str, Any] = {}
    for name in ("cron", "every", "timezone", "job"):
        if getattr(args, name):
            fields[name] = getattr(args, name)
    options = _options(args.options)
    if options is not None:
        fields["options"] = options
    fields.update(_with(args.rules))
    return fields


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    fields = _fields(args)
    steps.new_definition(args.name, fields, settings)  # refused before the database is opened
    row = operate(settings, lambda op: steps.add(op, args.name, fields))
    print(printable(f"schedule {row.name} added ({steps.when(steps.spec_of(row))})"))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    changes = _fields(args)
    _, changed = operate(settings, lambda op: steps.edit(op, args.name, changes))
    print(f"schedule {args.name} {'changed' if changed else 'unchanged'}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    operate(settings_of(args), lambda op: steps.remove(op, args.name))
    print(f"schedule {args.name} removed")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    steps.pause_note(args.note, {"note": "--note"})  # refused before the database is opened
    operate(
        settings,
        lambda op: steps.pause(op, args.name, args.note, {"note": "--note"}),
        reason=args.reason,
    )
    print(f"schedule {args.name} paused")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _, resumed = operate(
        settings_of(args), lambda op: steps.resume(op, args.name), reason=args.reason
    )
    if not resumed:
        print(f"schedule {args.name} is not paused; nothing changed")
    else:
        print(f"schedule {args.name} resumed")
    return 0


def cmd_run_now(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    row, run = operate(
        settings, lambda op: steps.run_now(op, args.name, datetime.now(UTC)), reason=args.reason
    )
    print(f"run {run} of {args.name} queued; {steps.when_it_starts(row, one=True)}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    done = operate(settings, lambda op: steps.cancel_run(op, args.name, args.run, args.note))
    print(printable(done.said))
    return 0


def cmd_notifications(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if not 1 <= args.limit <= MAX_RUNS:
        raise CliError(f"--limit: 1 to {MAX_RUNS:,}", EX_USAGE)
    events = tuple(dict.fromkeys(args.event or ()))
    sent = operate(
        settings,
        lambda op: steps.notifications(
            op, args.limit, args.before, args.rule, args.subject, args.notify_target, events,
            False if args.failed else None,
        ),
    )  # fmt: skip
    if args.json:
        print(json.dumps([steps.notification_json(n) for n in sent], indent=2))
        return 0
    for n in sent:
        took = "sent" if n.ok else "FAILED"
        print(printable(
            f"#{n.id} {n.at:%Y-%m-%d %H:%M:%S} UTC {n.event} {n.rule} about {n.subject} "
            f"to {n.target}: {took} — {n.title or '(no subject line kept)'}"
        ))  # fmt: skip
        if not n.ok or args.text:
            print(printable(f"    answer: {n.answer or '-'}"))
        if args.text and n.text:
            for line in n.text.rstrip("\n").splitlines():
                print(printable(f"    | {line}"))
    if not sent:
        print("no notifications sent")
    return 0


BACKFILL_NAMES = {"from": "--from", "until": "--until"}


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = settings_of(args)

    async def step(op: Operator) -> steps.Backfilled:
        row = await steps.found_row(op, args.name)
        zone = zone_of(steps.spec_of(row), settings)  # the times are the schedule's
        start = parse_time(args.since, zone, "--from")
        end = parse_time(args.until, zone, "--until")
        return await steps.backfill(
            op, args.name, start, end, datetime.now(UTC), args.dry_run, BACKFILL_NAMES
        )

    done = operate(settings, step, reason=args.reason)
    if done.dry_run:
        print(f"{done.fires} fire(s) of {args.name} in the range; nothing queued (--dry-run)")
        return 0
    print(
        f"{len(done.queued)} run(s) of {args.name} queued, one per fire; "
        f"{done.already} already in the ledger; {steps.when_it_starts(done.row, one=False)}"
    )
    return 0
