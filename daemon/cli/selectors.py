"""The options that select messages (``--id``, ``--channel``, ``--status``,
``--kind``, ``--key``, ``--since``, ``--until``, ``--q``, ``--mrn`` and the other
search fields) read into what the operator layer decides on
(``daemon.operator.messages.selection``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from daemon.cli.common import parse_time
from daemon.cli.errors import EX_USAGE, CliError
from daemon.config.settings import Settings
from daemon.domain.limits import read_id
from daemon.domain.search import FIELD_NAMES
from daemon.domain.selection import FILTER_FIELDS, MessageFilter


# how the command line names the parts of a selection
def option(name: str) -> str:
    """How the command line spells a filter field: ``control_id`` → ``--control-id``."""
    return "--" + name.replace("_", "-")


NAMES = {
    "ids": "--id",
    "filter": "a filter",
    "selectors": "/".join(option(name) for name in FILTER_FIELDS),
    **{name: option(name) for name in FILTER_FIELDS},
}


def message_id(text: str, option: str = "--id") -> int:
    found = read_id(text)
    if found is None:
        raise CliError(f"{option}: {text!r} is not a message id (a whole number)", EX_USAGE)
    return found


def message_ids(groups: Sequence[str]) -> tuple[int, ...]:
    """``--id 12 --id 13,14``: message ids, each a whole number that can be one."""
    return tuple(message_id(part) for group in groups for part in group.split(",") if part.strip())


def filter_of(args: argparse.Namespace, settings: Settings) -> MessageFilter | None:
    """The filter the options say; None when they say none."""
    if not any(getattr(args, name) for name in FILTER_FIELDS):
        return None
    tz = ZoneInfo(settings.timezone)
    return MessageFilter(
        channel=args.channel,
        statuses=tuple(dict.fromkeys(args.status or ())),
        since=parse_time(args.since, tz, "--since") if args.since else None,
        until=parse_time(args.until, tz, "--until") if args.until else None,
        kind=args.kind,
        key_prefix=args.key,
        text=args.q,
        fields=tuple(
            (name, value) for name in FIELD_NAMES if (value := getattr(args, name)) is not None
        ),
    )
