"""The commands on schedules and their ledger: ``outboxd schedules list | show |
add | edit | remove | pause | resume | run | backfill | preview`` and ``outboxd
runs NAME``. What they change, they change in the database the scheduler reads:
a scheduler picks it up within ``roles.scheduler.sync_interval``."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml

from daemon.cli.common import open_store, parse_time, settings_of
from daemon.cli.errors import EX_DATAERR, EX_USAGE, CliError
from daemon.config.schedules import DefinitionError, read_definition, timing_of, zone_of
from daemon.config.settings import ScheduleSettings, Settings
from daemon.domain.errors import Refused
from daemon.domain.schedules import ScheduleError, ScheduleRow
from daemon.domain.units import format_duration
from daemon.operator import schedules as admin
from daemon.operator.schedules import EPSILON
from daemon.operator.summaries import printable
from daemon.scheduling.fires import Fire, Timing, next_fires
from daemon.store.sync import Store

MAX_RUNS = 10_000  # runs `outboxd runs` may list


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'operator')}"


def _refused(exc: Refused) -> CliError:
    return CliError(str(exc), EX_USAGE if exc.kind == "usage" else EX_DATAERR)


def _spec(row: ScheduleRow) -> ScheduleSettings:
    try:
        return admin.spec_of(row)
    except Refused as exc:
        raise _refused(exc) from None


def _row(store: Store, name: str, settings: Settings) -> ScheduleRow:
    try:
        return admin.found(store.schedule(name), name, settings)
    except Refused as exc:
        raise _refused(exc) from None


def _fire_line(fire: Fire) -> str:
    note = f"  ({fire.note})" if fire.note else ""
    return f"  {fire.local:%Y-%m-%d %H:%M:%S %Z}   {fire.at:%Y-%m-%d %H:%M:%S} UTC{note}"


# --- reading ---------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store = open_store(settings)
    try:
        rows = store.schedules()
        recent = store.runs(limit=1000)
    finally:
        store.close()
    try:
        out = admin.listing(rows, recent, settings, datetime.now(UTC))
    except Refused as exc:
        raise _refused(exc) from None
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if not out:
        print("no schedules")
    for item in out:
        nxt = item["next"]["local"][:19].replace("T", " ") if item["next"] else "-"
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
    store = open_store(settings)
    try:
        row = _row(store, args.name, settings)
        runs = store.runs(args.name, limit=10)
    finally:
        store.close()
    spec = _spec(row)
    now = datetime.now(UTC)
    shown = admin.detail(row, runs, settings, now)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(printable(f"{row.name}: {spec.job}, {admin.when(spec)} ({zone_of(spec, settings)})"))
    origin = "the YAML file" if row.origin == "file" else "the CLI or the API"
    print(printable(f"  {admin.state(row, spec)}; from {origin}, revision {row.revision}"))
    if shown["file_differs"]:
        print(f"  {admin.FILE_DIFFERS}")
    print(
        f"  overlap {spec.overlap}, catch up {format_duration(spec.catch_up)}, "
        f"retry up to {spec.retry.max_attempts} runs"
    )
    print("next fires:")
    for fire in next_fires(timing_of(spec, settings), now, 5):
        print(_fire_line(fire))
    print("recent runs:")
    for run in runs:
        print(printable(_run_line(run)))
    return 0


def _run_line(run: Any) -> str:
    took = ""
    if run.started_at and run.finished_at:
        took = f" in {format_duration((run.finished_at - run.started_at).total_seconds())}"
    why = f" — {run.error}" if run.error else (f" — {run.note}" if run.note else "")
    return (
        f"  #{run.id} {run.fire_time:%Y-%m-%d %H:%M:%S} UTC {run.trigger} attempt {run.attempt}: "
        f"{run.status}{took}{why}"
    )


def cmd_runs(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if not 1 <= args.limit <= MAX_RUNS:
        raise CliError(f"--limit: 1 to {MAX_RUNS:,}", EX_USAGE)
    store = open_store(settings)
    try:
        if store.schedule(args.name) is None:
            _row(store, args.name, settings)  # says why there is none
        runs = store.runs(args.name, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([admin.run_json(r) for r in runs], indent=2))
    else:
        for run in runs:
            print(printable(_run_line(run)))
        if not runs:
            print(f"no runs of {args.name} yet")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.name:
        if args.cron or args.every:
            raise CliError("give a schedule's name, or --cron / --every, not both", EX_USAGE)
        store = open_store(settings)
        try:
            spec = _spec(_row(store, args.name, settings))
        finally:
            store.close()
        timing = timing_of(spec, settings)
    else:
        timing = _adhoc_timing(args, settings)
    start = parse_time(args.since, timing.zone, "--from") if args.since else datetime.now(UTC)  # type: ignore[arg-type]
    if not 1 <= args.count <= 1000:
        raise CliError("--count: 1 to 1000", EX_USAGE)
    try:
        upcoming = next_fires(timing, start - EPSILON, args.count)  # a fire at --from too
    except OverflowError:
        raise CliError("--from: fires beyond the years 1 to 9999", EX_USAGE) from None
    if args.json:
        print(json.dumps([admin.fire_json(f) for f in upcoming], indent=2))
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
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise CliError("--options: not a JSON object", EX_USAGE) from None
    if not isinstance(value, dict):
        raise CliError("--options: not a JSON object", EX_USAGE)
    return value


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    fields: dict[str, Any] = {"job": args.job}
    if args.cron:
        fields["cron"] = args.cron
    if args.every:
        fields["every"] = args.every
    if args.timezone:
        fields["timezone"] = args.timezone
    options = _options(args.options)
    if options is not None:
        fields["options"] = options
    fields.update(_with(args.rules))
    try:
        stored = admin.new_definition(args.name, fields, settings)
    except Refused as exc:
        raise _refused(exc) from None
    store = open_store(settings)
    try:
        row = store.put_schedule(args.name, stored, _actor(), create=True)
    except ScheduleError as exc:
        raise CliError(str(exc), EX_DATAERR) from None
    finally:
        store.close()
    print(printable(f"schedule {row.name} added ({admin.when(_spec(row))})"))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store = open_store(settings)
    try:
        row = _row(store, args.name, settings)
        changes: dict[str, Any] = {}
        if args.cron:
            changes["cron"] = args.cron
        if args.every:
            changes["every"] = args.every
        if args.timezone:
            changes["timezone"] = args.timezone
        if args.job:
            changes["job"] = args.job
        options = _options(args.options)
        if options is not None:
            changes["options"] = options
        changes.update(_with(args.rules))
        try:
            stored = admin.edited_definition(row, changes, settings)
        except Refused as exc:
            raise _refused(exc) from None
        if stored == row.definition:
            print(f"schedule {args.name} unchanged")
            return 0
        try:
            store.put_schedule(args.name, stored, _actor(), create=False)
        except ScheduleError as exc:
            raise CliError(str(exc), EX_DATAERR) from None
    finally:
        store.close()
    print(f"schedule {args.name} changed")
    return 0


def _simple(action: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        settings = settings_of(args)
        note = getattr(args, "note", None)
        if action == "pause":
            try:
                note = admin.pause_note(note, {"note": "--note"})
            except Refused as exc:
                raise _refused(exc) from None
        store = open_store(settings)
        try:
            row = _row(store, args.name, settings)
            if action == "resume" and not row.paused:
                print(f"schedule {args.name} is not paused; nothing changed")
                return 0
            if action == "remove":
                store.remove_schedule(args.name, _actor())
            else:
                store.pause_schedule(args.name, action == "pause", note, _actor())
        except ScheduleError as exc:
            raise CliError(str(exc), EX_DATAERR) from None
        finally:
            store.close()
        print(f"schedule {args.name} {'removed' if action == 'remove' else action + 'd'}")
        return 0

    return command


cmd_remove = _simple("remove")
cmd_pause = _simple("pause")
cmd_resume = _simple("resume")


def cmd_run_now(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store = open_store(settings)
    try:
        row = _row(store, args.name, settings)
        now = datetime.now(UTC)
        [run] = store.queue_runs(row.id, [now], "manual", note="run now", actor=_actor()) or [None]
    finally:
        store.close()
    if run is None:
        raise CliError("the run was not queued (one for this very instant exists)", EX_DATAERR)
    print(f"run {run} of {args.name} queued; {admin.when_it_starts(row, one=True)}")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store = open_store(settings)
    try:
        row = _row(store, args.name, settings)
        zone = zone_of(_spec(row), settings)
        start = parse_time(args.since, zone, "--from")
        end = parse_time(args.until, zone, "--until")
        try:
            fires = admin.backfill_fires(
                row, settings, start, end, datetime.now(UTC), {"from": "--from", "until": "--until"}
            )
        except Refused as exc:
            raise _refused(exc) from None
        if args.dry_run:
            print(f"{len(fires)} fire(s) of {args.name} in the range; nothing queued (--dry-run)")
            return 0
        queued = store.queue_runs(row.id, fires, "backfill", note="backfill", actor=_actor())
    finally:
        store.close()
    print(
        f"{len(queued)} run(s) of {args.name} queued, one per fire; "
        f"{len(fires) - len(queued)} already in the ledger; {admin.when_it_starts(row, one=False)}"
    )
    return 0
