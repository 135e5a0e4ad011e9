"""The ``outboxd`` command: check-config, migrate, enqueue, stats, retry, cancel, run.

Errors are one line on stderr and a sysexits-style code, never a traceback
(set ``OUTBOXD_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon import __version__
from daemon.channels.registry import InvalidPayload, message_kind, prepare_payload
from daemon.config import EX_CONFIG, ConfigError, load_config
from daemon.errors import StartupError
from daemon.report import config_summary, stats_json, stats_rows, stats_table, visit_lines
from daemon.roles import ROLES
from daemon.settings import Settings
from daemon.store import (
    LATEST,
    SchemaMismatch,
    Store,
    StoreError,
    StoreUnavailable,
    current_version,
    migrate,
    open_database,
)
from daemon.store.db import DatabaseFileError
from daemon.store.migrations import require_current
from daemon.store.models import STATUSES, utcnow
from daemon.store.types import InvalidMessage, MessageFilter, NewMessage, OperatorResult
from daemon.store.visits import VisitView
from daemon.units import parse_duration

EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
MAX_ID = 2**63 - 1  # the largest id a message can have


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- helpers ------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return load_config(args.config)


def _open_store(settings: Settings) -> Store:
    """The store of an existing, current database (nothing is created)."""
    db = open_database(settings.database, create=False)
    try:
        require_current(db)
    except BaseException:
        db.close()
        raise
    return Store(db)


def _parse_time(text: str, tz: ZoneInfo, option: str = "--since") -> datetime:
    """``2026-11-23T08:00`` (in the configured zone unless it has an offset), or a
    duration meaning that long ago (``2h``)."""
    try:
        return utcnow() - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
        value = value.replace(tzinfo=tz) if value.tzinfo is None else value
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CliError(
            f"{option}: invalid time {text!r}: use ISO 8601 (2026-11-23T08:00) or an age "
            "such as 2h",
            EX_USAGE,
        ) from None


def _ids(groups: Sequence[str]) -> tuple[int, ...]:
    """``--id 12 --id 13,14``: message ids, each a whole number that can be one."""
    ids = []
    for group in groups:
        for part in group.split(","):
            text = part.strip()
            if not text:
                continue
            if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ID:
                raise CliError(f"--id: {part!r} is not a message id (a whole number)", EX_USAGE)
            ids.append(int(text))
    return tuple(ids)


def _window(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise CliError(f"--window: {exc}", EX_USAGE) from None
    if seconds <= 0:
        raise CliError(f"--window: {text!r} is no time at all: give one such as 1h", EX_USAGE)
    return seconds


def _check_text(args: argparse.Namespace) -> None:
    """Every text argument a message or a lookup uses must be UTF-8 (a shell can
    pass any bytes; they cannot be stored, compared or printed as they are)."""
    for name, value in vars(args).items():
        if name in ("config", "payload") or not isinstance(value, str | list):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    option = name if name in ("kodebooking",) else f"--{name.replace('_', '-')}"
                    raise CliError(f"{option}: not valid UTF-8 text", EX_DATAERR) from None


def _selector(args: argparse.Namespace, settings: Settings) -> MessageFilter:
    tz = ZoneInfo(settings.timezone)
    ids = _ids(args.id or [])
    selector = MessageFilter(
        ids=ids,
        channel=args.channel,
        statuses=tuple(args.status or ()),
        since=_parse_time(args.since, tz, "--since") if args.since else None,
        until=_parse_time(args.until, tz, "--until") if args.until else None,
    )
    if selector.empty:
        raise CliError("select messages with --id, or --channel/--status/--since/--until", EX_USAGE)
    return selector


def _read_payload(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read payload {source}: {exc.strerror}", EX_NOINPUT) from None


def _report_operation(verb: str, result: OperatorResult) -> int:
    print(f"{verb} {len(result.changed)} message(s)")
    if result.changed and len(result.changed) <= 50:
        print("ids: " + ", ".join(map(str, result.changed)))
    if result.skipped:
        parts = ", ".join(f"{n} {status}" for status, n in sorted(result.skipped.items()))
        print(f"left as they are: {parts}")
    if result.missing:
        print("not found: " + ", ".join(map(str, result.missing)), file=sys.stderr)
        return EX_DATAERR
    return 0


# --- commands -----------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source = str(args.config or os.environ.get("OUTBOXD_CONFIG"))
    print("\n".join(config_summary(settings, source)))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    db = open_database(settings.database)
    try:
        before = current_version(db)
        applied = migrate(db)
    finally:
        db.close()
    if applied:
        for m in applied:
            print(f"applied migration {m.version}: {m.description}")
        print(f"schema upgraded from version {before} to {LATEST}")
    else:
        print(f"schema is up to date (version {LATEST})")
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    settings = _settings(args)
    channel = settings.channels.get(args.channel)
    if channel is None:
        known = ", ".join(sorted(settings.channels)) or "none configured"
        raise CliError(f"unknown channel {args.channel!r} (channels: {known})", EX_USAGE)
    try:
        kind = message_kind(channel, args.kind)
    except InvalidPayload as exc:
        raise CliError(str(exc), EX_USAGE) from None
    payload = _read_payload(args.payload)
    if not payload.strip():
        raise CliError("the payload is empty", EX_DATAERR)
    try:
        payload = prepare_payload(channel, payload, kind)
    except InvalidPayload as exc:
        raise CliError(str(exc), EX_DATAERR) from None
    message = NewMessage(
        channel=args.channel,
        key=args.key,
        payload=payload,
        kind=kind,
        after_key=args.after,
        group_key=args.group,
    )
    store = _open_store(settings)
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
    settings = _settings(args)
    store = _open_store(settings)
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


def _operator_command(
    verb: str, operation: Callable[[Store], Callable[..., OperatorResult]]
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        settings = _settings(args)
        selector = _selector(args, settings)
        store = _open_store(settings)
        try:
            result = operation(store)(selector, actor=f"cli:{os.environ.get('USER', 'operator')}")
        finally:
            store.close()
        return _report_operation(verb, result)

    return command


def cmd_visit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = _open_store(settings)
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
                [_visit_json(v) for v in visits] if len(visits) > 1 else _visit_json(visits[0]),
                indent=2,
            )
        )
    else:
        print("\n".join(visit_lines(visits[0], ZoneInfo(settings.timezone))))
    return 0


def _visit_json(visit: VisitView) -> dict[str, object]:
    return {
        "kodebooking": visit.kodebooking,
        "source": visit.source,
        "task_progress": visit.task_progress,
        "created_at": visit.created_at.isoformat(),
        "updated_at": visit.updated_at.isoformat(),
    }


cmd_retry = _operator_command("retried", lambda store: store.retry)
cmd_cancel = _operator_command("cancelled", lambda store: store.cancel)


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.roles import role_factory
    from daemon.roles.frame import NoHealthPort, run_role

    try:
        return run_role(args.role, args.process_num, args.config, role_factory(args.role))
    except NoHealthPort as exc:
        raise CliError(f"--process-num: {exc}", EX_USAGE) from None


# --- parser -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="the YAML file (default: $OUTBOXD_CONFIG)",
    )
    parser = argparse.ArgumentParser(
        prog="outboxd", description="Reliable outbox delivery.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"outboxd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(func=func)
        return cmd

    add("check-config", cmd_check_config, "validate the YAML file and summarise it")
    add("migrate", cmd_migrate, "create or upgrade the database schema")

    enqueue = add("enqueue", cmd_enqueue, "store one message for delivery")
    enqueue.add_argument("--channel", required=True)
    enqueue.add_argument("--key", required=True, help="idempotency key, unique per channel")
    enqueue.add_argument("--after", metavar="KEY", help="a message of the channel to send first")
    enqueue.add_argument("--kind", help="payload kind (default from the channel)")
    enqueue.add_argument("--group", help="ordering key: on an ordered channel, one at a time")
    enqueue.add_argument("--json", action="store_true", help="print the result as JSON")
    enqueue.add_argument("payload", nargs="?", default="-", metavar="FILE|-")

    stats = add("stats", cmd_stats, "counts per channel and status, oldest pending age")
    stats.add_argument("--json", action="store_true")
    stats.add_argument("--window", default="1h", help="success-rate window (default 1h)")

    for name, func, text in (
        ("retry", cmd_retry, "make messages due again with attempts reset"),
        ("cancel", cmd_cancel, "cancel pending or failed messages"),
    ):
        op = add(name, func, text)
        op.add_argument("--id", action="append", metavar="ID[,ID…]")
        op.add_argument("--channel")
        op.add_argument("--status", action="append", choices=STATUSES)
        op.add_argument("--since", metavar="TIME|AGE", help="created at or after")
        op.add_argument("--until", metavar="TIME|AGE", help="created before")

    visit = add("visit", cmd_visit, "a visit's BPJS task progress")
    visit.add_argument("kodebooking")
    visit.add_argument("--source", help="the source, when several have this kodebooking")
    visit.add_argument("--json", action="store_true")

    run = add("run", cmd_run, f"run a role until SIGTERM ({', '.join(ROLES)})")
    run.add_argument("role", choices=list(ROLES))
    run.add_argument("--process-num", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # an argument that is not UTF-8 still prints
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    try:
        _check_text(args)
        return args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    except CliError as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return exc.code
    except InvalidMessage as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return EX_DATAERR
    except SchemaMismatch as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return EX_CONFIG
    except StartupError as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except DatabaseFileError as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (StoreUnavailable, StoreError) as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`outboxd stats | head`): nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("OUTBOXD_DEBUG"):
            raise
        print(f"outboxd: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_SOFTWARE
