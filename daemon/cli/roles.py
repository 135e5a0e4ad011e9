"""``outboxd run NAME``: the roles a process can run, where each is defined, and the
parser of that command alone. A role's start, which supervisord makes at every
restart, builds no other command's parser and imports no other command's values.
Imports only the standard library."""

from __future__ import annotations

import argparse

ROLES = {
    "dispatcher": "daemon.roles.dispatcher:Dispatcher",
    "poller": "daemon.roles.poller:Poller",
    "scheduler": "daemon.roles.scheduler:Scheduler",
    "control": "daemon.api.role:Control",
}

RUN_HELP = f"run a role until SIGTERM ({', '.join(ROLES)})"
ROLE_START = "daemon.cli.run:cmd_run"  # what runs ``outboxd run``


def common_options() -> argparse.ArgumentParser:
    """The options every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="the YAML file (default: $OUTBOXD_CONFIG)",
    )
    return common


def run_parser() -> argparse.ArgumentParser:
    """The parser of ``outboxd run`` alone, the same as the whole parser's (its
    usage, help and errors read ``outboxd run``)."""
    parser = argparse.ArgumentParser(
        prog="outboxd run", parents=[common_options()], description=RUN_HELP
    )
    parser.set_defaults(command="run", target=ROLE_START)
    run_arguments(parser)
    return parser


def run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("role", choices=list(ROLES))
    run.add_argument("--process-num", type=int, default=0)
