"""The ``outboxd`` command: check-config, migrate, run, status; enqueue, stats, retry,
cancel, resend, visit; messages list and show; schedules, runs; token.

Errors are one line on stderr and a sysexits-style code, never a traceback
(set ``OUTBOXD_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence

from daemon import __version__
from daemon.cli import browse, messages, schedules, status, system, tokens
from daemon.cli.common import (
    EX_DATAERR,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    EX_USAGE,
    CliError,
    check_text,
    subcommands,
)
from daemon.config.loader import EX_CONFIG, ConfigError
from daemon.domain.errors import (
    DatabaseFileError,
    SchemaMismatch,
    StartupError,
    StoreError,
    StoreUnavailable,
)
from daemon.domain.messages import InvalidMessage
from daemon.domain.selection import InvalidCursor, OperatorRefused


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
    add = subcommands(parser, common, "command", "COMMAND")

    system.register(add)
    status.register(add)
    messages.register(add)
    browse.register(add, common)
    schedules.register(add, common)
    tokens.register(add, common)
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
        check_text(args)
        return args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    except CliError as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return exc.code
    except (OperatorRefused, InvalidCursor) as exc:  # the selection asked for cannot be
        print(f"outboxd: {exc}", file=sys.stderr)
        return EX_USAGE
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
