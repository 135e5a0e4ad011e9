"""``outboxd token new``: a token for the control API, printed once, and the
``control.tokens`` line that lets it in (the file keeps its SHA-256 only)."""

from __future__ import annotations

import argparse

from daemon.cli.errors import EX_USAGE, CliError
from daemon.domain.auth import ROLES, hash_token, new_token, token_entry_line
from daemon.domain.limits import is_name


def cmd_token_new(args: argparse.Namespace) -> int:
    if not is_name(args.name):
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
