"""The options that select messages (``--id``, ``--channel``, ``--status``,
``--kind``, ``--key``, ``--since``, ``--until``) and the filter they make."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from daemon.cli.common import parse_time
from daemon.cli.errors import EX_USAGE, CliError
from daemon.cli.parser import FILTER_OPTIONS
from daemon.config.settings import Settings
from daemon.domain.limits import MAX_ID
from daemon.domain.selection import MessageFilter


def message_id(text: str, option: str = "--id") -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_ID:
        raise CliError(f"{option}: {text!r} is not a message id (a whole number)", EX_USAGE)
    return int(value)


def message_ids(groups: Sequence[str]) -> tuple[int, ...]:
    """``--id 12 --id 13,14``: message ids, each a whole number that can be one."""
    return tuple(message_id(part) for group in groups for part in group.split(",") if part.strip())


def selector_of(args: argparse.Namespace, settings: Settings) -> MessageFilter:
    """The filter the options say; refuses ids with a filter (the store refuses
    the rest: a key prefix without its channel, a channel the settings lack)."""
    tz = ZoneInfo(settings.timezone)
    ids = message_ids(getattr(args, "id", None) or [])
    given = [f"--{name}" for name in FILTER_OPTIONS if getattr(args, name)]
    if ids and given:
        raise CliError(
            f"--id selects messages by id: it cannot go with {', '.join(given)} "
            "(select by id or by a filter)",
            EX_USAGE,
        )
    return MessageFilter(
        ids=ids,
        channel=args.channel,
        statuses=tuple(dict.fromkeys(args.status or ())),
        since=parse_time(args.since, tz, "--since") if args.since else None,
        until=parse_time(args.until, tz, "--until") if args.until else None,
        kind=args.kind,
        key_prefix=args.key,
    )
