"""What a benchmark prints: progress lines on stderr; on stdout its figures, as a table
under the machine's facts and the run's set-up, or as JSON (``--json``)."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from statistics import median
from typing import TYPE_CHECKING, Any

import peewee
import psycopg

if TYPE_CHECKING:
    from lib.backends import Backend

__all__ = [
    "first_line",
    "heading",
    "join",
    "log",
    "machine_facts",
    "median",
    "percentile",
    "print_report",
    "runs_note",
    "value_text",
    "verdict",
]

SHARED_MACHINE = "shared machine: other work may run; read medians and ratios"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def first_line(exc: BaseException) -> str:
    """An error's first line (its type where it says nothing)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- statistics --------------------------------------------------------------------------


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(samples)
    rank = -(-len(ordered) * pct // 100)  # ceil
    return ordered[max(1, int(rank)) - 1]


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- the table -----------------------------------------------------------------------------


def machine_facts(backends: Sequence[Backend], shared: bool = False) -> dict[str, str]:
    """Cores, versions, and with ``shared`` a warning and the load average at start."""
    facts = {"cpus": str(os.cpu_count())}
    if shared:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
        facts["cpus"] += f" ({SHARED_MACHINE})"
        facts["load average"] = f"{load} (1, 5, 15 min) at start"
    facts |= {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "peewee": peewee.__version__,
        "psycopg": psycopg.__version__,
    }
    for backend in backends:
        if backend.name == "postgres":
            facts["postgresql"] = backend.version()
    return facts


def heading(title: str, facts: dict[str, str], setup: dict[str, str]) -> list[str]:
    """The lines above a table: its title, then the machine's facts and the set-up."""
    return [title, "", *(f"  {key:<14} {value}" for key, value in {**facts, **setup}.items())]


def value_text(value: float, unit: str, precise: bool) -> str:
    """A figure's value in a table: blank without a unit, two decimals where ``precise``,
    else whole with thousands separators."""
    if not unit:
        return ""
    return f"{value:.2f}" if precise else f"{value:,.0f}"


def runs_note(runs: Sequence[float]) -> str:
    """The runs a median was taken of, where there was more than one."""
    return "median of " + " ".join(f"{r:,.0f}" for r in sorted(runs)) if len(runs) > 1 else ""


def print_report(
    as_json: bool,
    facts: dict[str, str],
    setup: dict[str, str],
    figures: Sequence[Any],
    table: Callable[[dict[str, str], dict[str, str], Sequence[Any]], str],
) -> None:
    """The figures (dataclasses) on stdout: ``table(facts, setup, figures)``, or JSON."""
    if as_json:
        report = {"machine": facts, "setup": setup, "figures": [asdict(f) for f in figures]}
        print(json.dumps(report, indent=2))
    else:
        print(table(facts, setup, figures))
