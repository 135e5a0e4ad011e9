"""What a run is for, written into a job's options: ``{{fire:%Y-%m-%d}}`` in an
``http`` job's URL, headers and body, an ``export`` job's file name, a
``command`` job's arguments and environment. Pure: no I/O.

| placeholder              | is replaced by                                            |
|--------------------------|-----------------------------------------------------------|
| ``{{schedule}}``         | the schedule's name                                       |
| ``{{fire}}``             | the fire time in UTC, ISO 8601: ``2026-03-01T05:00:00Z``  |
| ``{{fire:FORMAT}}``      | the fire time in UTC, by ``strftime``: ``{{fire:%Y-%m-%d}}`` |
| ``{{fire_local}}``       | the fire time in the schedule's zone, ISO 8601 with its   |
|                          | offset: ``2026-03-01T12:00:00+07:00``                     |
| ``{{fire_local:FORMAT}}``| the same, by ``strftime``: ``{{fire_local:%d.%m.%Y}}``    |
| ``{{attempt}}``          | the run's attempt: 1, then 2 for its first retry …        |
| ``{{run}}``              | the run's id in the ledger                                |

The fire time is the one the run is for, not when it started: a retry, a
catch-up run or a backfill writes the time of its fire. A placeholder is ``{{``,
one of these names, an optional ``:FORMAT`` (for the two times only) and ``}}``;
spaces around the name are allowed. Other braces are left as they are (a JSON
body's, an export name's ``{start}``), and so is ``{{`` not followed by a name;
a name not in the table is refused when the file is read, with its path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import AfterValidator

NAMES = ("schedule", "fire", "fire_local", "attempt", "run")
TIMES = ("fire", "fire_local")  # the placeholders a FORMAT may follow
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::((?:(?!\}\}).)*))?\}\}")
URL_SAFE = "-._~:"  # what a value keeps as it is in a URL; the rest is percent-encoded


@dataclass(frozen=True)
class RunFacts:
    """What a run is for: the values its placeholders take."""

    schedule: str
    fire: datetime  # aware
    zone: ZoneInfo
    attempt: int
    run: int

    def value(self, name: str, spec: str | None) -> str:
        if name in TIMES:
            moment = self.fire.astimezone(UTC if name == "fire" else self.zone)
            if spec:
                return moment.strftime(spec)
            text = moment.isoformat()
            return text[:-6] + "Z" if name == "fire" and text.endswith("+00:00") else text
        return str(getattr(self, name))


SAMPLE = RunFacts("schedule", datetime(2026, 1, 31, 23, 0, tzinfo=UTC), ZoneInfo("UTC"), 1, 1)


def problems(text: str) -> list[str]:
    """What is wrong with the placeholders of a text (nothing: an empty list)."""
    found = []
    for match in _PLACEHOLDER.finditer(text):
        name, spec = match.group(1), match.group(2)
        if name not in NAMES:
            known = ", ".join("{{" + n + "}}" for n in NAMES)
            found.append(f"unknown placeholder {match.group(0)!r} (one of {known})")
        elif spec is not None and name not in TIMES:
            found.append(f"{match.group(0)!r}: only {{{{fire}}}} and {{{{fire_local}}}} "
                         "take a :FORMAT")  # fmt: skip
        elif spec is not None and not spec:
            found.append(f"{match.group(0)!r}: an empty FORMAT (leave out the ':')")
        elif spec is not None:
            try:
                SAMPLE.value(name, spec)
            except ValueError as exc:
                found.append(f"{match.group(0)!r}: not a strftime FORMAT ({exc})")
    return found


def has_placeholders(text: str) -> bool:
    return any(m.group(1) in NAMES for m in _PLACEHOLDER.finditer(text))


def render(text: str, facts: RunFacts, url: bool = False) -> str:
    """The text with its placeholders filled (``url``: each value percent-encoded
    but for ``-._~:``)."""

    def fill(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2)
        if name not in NAMES:
            return match.group(0)
        value = facts.value(name, spec)
        return quote(value, safe=URL_SAFE) if url else value

    return _PLACEHOLDER.sub(fill, text) if "{{" in text else text


def render_tree(value: Any, facts: RunFacts) -> Any:
    """Every string in a JSON-like value (a body given as a mapping or a list)
    filled; keys are left as they are."""
    if isinstance(value, str):
        return render(value, facts)
    if isinstance(value, Mapping):
        return {k: render_tree(v, facts) for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, facts) for v in value]
    return value


def strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in strings_of(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


def _checked(value: Any) -> Any:
    issues = [p for text in strings_of(value) for p in problems(text)]
    if issues:
        raise ValueError("; ".join(issues))
    return value


Templated = Annotated[str, AfterValidator(_checked)]  # a string that may hold placeholders


def check_tree(value: Any) -> Any:
    """A validator for a JSON-like value whose strings may hold placeholders."""
    return _checked(value)
