"""The command-line options the benchmarks share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lib.backends import DEFAULT_PG, NAMES


def new_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--pg URL`` and ``--backends sqlite,postgres``."""
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL URL (default {DEFAULT_PG})")
    parser.add_argument("--backends", default=",".join(NAMES), help="comma-separated")


def add_run_options(parser: argparse.ArgumentParser, repeat_help: str) -> None:
    """``--quick`` (a smoke run) and ``--repeat N``."""
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeat", type=int, help=repeat_help)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, ``--backends`` checked."""
    args = parser.parse_args(argv)
    unknown = set(args.backends.split(",")) - set(NAMES)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    return args


def int_list(text: str) -> tuple[int, ...]:
    """``1,100,500`` (``10_000`` too) as numbers."""
    return tuple(int(part.replace("_", "")) for part in text.split(","))
