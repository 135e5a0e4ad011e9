"""Reading a message as an operator does: its segments with each field's
position (``PID-3``), and the fields a message is looked up by (MSH-10, MSH-9,
PID-3, PV1-19). Lenient where ``validate`` is strict: it reads what was stored or
answered (an ACK too) and never refuses; what is not HL7 v2 is ``None``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.domain.search import keepable

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_LINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Field:
    position: str  # PID-3
    value: str  # as written (escapes kept)


@dataclass(frozen=True, slots=True)
class Segment:
    name: str  # PID
    text: str  # the segment as written
    fields: tuple[Field, ...]  # every field, the empty ones too, in order


def _separator(text: str) -> str | None:
    if len(text) < 4 or not text.startswith("MSH"):
        return None
    sep = text[3]
    return None if sep.isalnum() or sep.isspace() else sep


def segments(text: str) -> list[Segment] | None:
    """The segments of ``text`` in order, each with its fields by position, or None
    when ``text`` does not begin with an MSH segment. Segments may end with
    ``\\r``, ``\\n`` or both; blank lines are passed over."""
    text = text.lstrip()
    sep = _separator(text)
    if sep is None:
        return None
    out: list[Segment] = []
    for line in _LINE.split(text):
        if not line.strip():
            continue
        name = line[:3]
        if not _SEGMENT_ID.fullmatch(name) or (len(line) > 3 and line[3] != sep):
            out.append(Segment("", line, ()))  # not a segment: shown as it is
            continue
        values = line.split(sep)[1:]
        if name == "MSH":  # MSH-1 is the separator itself; MSH-2 follows it
            values = [sep, *values]
        fields = tuple(Field(f"{name}-{i}", v) for i, v in enumerate(values, 1))
        out.append(Segment(name, line, fields))
    return out


def _component(value: str, index: int, sep: str) -> str:
    parts = value.split(sep)
    return parts[index].strip() if len(parts) > index else ""


def identifiers(text: str) -> list[tuple[str, str]]:
    """The fields an operator finds a message by, as (name, value) pairs of
    ``daemon.domain.search.SEARCH_FIELDS``: ``control_id`` (MSH-10),
    ``message_type`` (MSH-9: the code, and code^event, as ``ADT`` and ``ADT^A04``),
    ``mrn`` (PID-3: the id of each repetition, of every PID segment) and
    ``visit_number`` (PV1-19: its id). Values that cannot be kept are left out."""
    found = segments(text)
    if not found or found[0].name != "MSH":
        return []
    msh = found[0].fields
    encoding = msh[1].value if len(msh) > 1 else ""
    component = encoding[0] if len(encoding) > 0 else "^"
    repetition = encoding[1] if len(encoding) > 1 else "~"
    out: list[tuple[str, str]] = []

    def keep(name: str, value: str) -> None:
        value = value.strip()
        if keepable(value) and (name, value) not in out:
            out.append((name, value))

    if len(msh) >= 10:
        keep("control_id", msh[9].value)
    if len(msh) >= 9:
        code = _component(msh[8].value, 0, component)
        event = _component(msh[8].value, 1, component)
        keep("message_type", code)
        if code and event:
            keep("message_type", f"{code}^{event}")
    for segment in found[1:]:
        if segment.name == "PID" and len(segment.fields) >= 3:
            for one in segment.fields[2].value.split(repetition):
                keep("mrn", _component(one, 0, component))
        elif segment.name == "PV1" and len(segment.fields) >= 19:
            keep("visit_number", _component(segment.fields[18].value, 0, component))
    return out
