"""The ``outboxd`` command: check-config, migrate, backup, run, status; enqueue, stats, retry,
cancel, resend, visit; messages list and show; schedules, runs; token.

The command line is parsed first (``parser``); then the module of the chosen
command is imported and run, so each command loads only what it needs. A
command runs the operator layer's steps (``daemon.operator``), the coroutines the
control API awaits, with ``asyncio.run`` over a store whose work is on a thread. Errors
are one line on stderr and a sysexits-style code, never a traceback (set
``OUTBOXD_DEBUG=1`` to see one). Whatever it creates is its owner's alone (umask
077: ``daemon.domain.files``). The faces (this, the API, the page) call the
operator layer; this one may import anything below it and not the API.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence

from daemon.cli.errors import EX_DATAERR, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE, CliError
from daemon.cli.roles import ROLE_START, run_parser
from daemon.config.errors import EX_CONFIG, ConfigError
from daemon.domain.errors import (
    DatabaseFileError,
    Refused,
    SchemaMismatch,
    StartupError,
    StoreError,
    StoreUnavailable,
)
from daemon.domain.files import private_umask
from daemon.runtime import collector

Command = Callable[[argparse.Namespace], int]


def command_of(target: str) -> Command:
    """The function a parsed command names (``module:function``), imported now."""
    module, _, name = target.partition(":")
    command: Command = getattr(importlib.import_module(module), name)
    return command


def check_text(args: argparse.Namespace) -> None:
    """Every text argument a message or a lookup uses must be UTF-8 (a shell can
    pass any bytes; they cannot be stored, compared or printed as they are)."""
    for name, value in vars(args).items():
        if name in ("config", "payload", "batch", "target") or not isinstance(value, str | list):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    option = name if name in ("kodebooking",) else f"--{name.replace('_', '-')}"
                    raise CliError(f"{option}: not valid UTF-8 text", EX_DATAERR) from None


def _parse(given: list[str]) -> argparse.Namespace:
    """The command line parsed; a role's start (``outboxd run ROLE``) by the parser of
    that command alone, and by the whole parser where it leaves arguments over (so
    that they are refused in its words)."""
    if given[:1] == ["run"]:
        args, extra = run_parser().parse_known_args(given[1:])
        if not extra:
            return args
    from daemon.cli.parser import build_parser  # every command's: not for a role's start

    return build_parser().parse_args(given)


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # an argument that is not UTF-8 still prints
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    # pydantic looks for plugins in every installed distribution's entry points at
    # its first validation (20 ms and more); outboxd uses none, unless this is set
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    given = sys.argv[1:] if argv is None else list(argv)
    args = _parse(given)
    if not hasattr(args, "config"):
        args.config = None
    umask = private_umask()  # nothing it writes readable by others (a role runs in here too)
    if args.target == ROLE_START:  # off until the frame has built the role
        collector.pause()
    try:
        check_text(args)
        return command_of(args.target)(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    except CliError as exc:
        print(f"outboxd: {exc}", file=sys.stderr)
        return exc.code
    except Refused as exc:  # the operator layer's: asked wrongly (64), or cannot be done (65)
        print(f"outboxd: {exc}", file=sys.stderr)
        return EX_USAGE if exc.kind == "usage" else EX_DATAERR
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
    finally:
        os.umask(umask)  # as it was, for a caller in the same process
        collector.resume(freeze=False)  # a start that failed: the collector as it was
