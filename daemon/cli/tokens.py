"""``outboxd token new``: a token for the control API, printed once, and the
``control.tokens`` line that lets it in (the file keeps its SHA-256 only)."""

from __future__ import annotations

import argparse
import re

from daemon.cli.common import EX_USAGE, Add, CliError
from daemon.domain.auth import ROLES, hash_token, new_token, token_entry_line

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")  # daemon.domain.fields.Name


def cmd_token_new(args: argparse.Namespace) -> int:
    if not _NAME.fullmatch(args.name):
        raise CliError(
            f"--name: invalid name {args.name!r}: 1-64 letters, digits, '_', '-', '.', "
            "starting with a letter",
            EX_USAGE,
        )
    if args.role not in ROLES:
        raise CliError(f"--role: no role {args.role!r} (roles: {', '.join(ROLES)})", EX_USAGE)
    token = new_token()
    print(f"token: {token}")
    print("  (shown this once: give it to the caller; outboxd keeps only its SHA-256)")
    print("add under control.tokens in the YAML file:")
    print(f"  {token_entry_line(args.name, args.role, hash_token(token))}")
    return 0


def _usage(args: argparse.Namespace) -> int:
    raise CliError("token: say what to do (new)", EX_USAGE)


def register(add: Add, common: argparse.ArgumentParser) -> None:
    token = add("token", _usage, "tokens of the control API: new")
    sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    text = "a new token, printed once, and the control.tokens line for it"
    new = sub.add_parser("new", parents=[common], help=text, description=text)
    new.set_defaults(func=cmd_token_new)
    new.add_argument("--name", required=True, help="who the token is for")
    new.add_argument("--role", required=True, help=", ".join(ROLES))
