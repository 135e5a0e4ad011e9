"""``outboxd audit``: the operator actions, newest first, as ``GET /api/v1/audit``
lists them (``--limit``, ``--before``; ``--json`` prints the API's page)."""

from __future__ import annotations

import argparse
import json
from zoneinfo import ZoneInfo

from daemon.cli.common import operate, settings_of
from daemon.cli.errors import EX_USAGE, CliError
from daemon.domain.limits import read_id
from daemon.operator.audit import audit_lines, audit_page

NAMES = {"limit": "--limit", "before": "--before"}


def cmd_audit(args: argparse.Namespace) -> int:
    before = None
    if args.before is not None:
        before = read_id(args.before)
        if before is None:
            raise CliError(f"--before: {args.before!r} is not an audit id", EX_USAGE)
    settings = settings_of(args)
    page = operate(settings, lambda op: audit_page(op, args.limit, before, NAMES))
    if args.json:
        print(json.dumps(page.json(), indent=2))
    else:
        print("\n".join(audit_lines(page, ZoneInfo(settings.timezone))))
    return 0
