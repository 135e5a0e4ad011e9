"""The separators a message declares for itself in MSH-1 and MSH-2."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from daemon.hl7.errors import InvalidHL7


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None  # the optional fifth character of MSH-2 (v2.7+)

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it is written."""
        chars = self.component + self.repetition + self.escape + self.subcomponent
        return chars + (self.truncation or "")


def _check_char(char: str, what: str) -> None:
    if not ("!" <= char <= "~") or char.isalnum():
        raise InvalidHL7(
            f"{what} must be a printable ASCII character that is not a letter or digit, "
            f"got {char!r}"
        )


def read_delimiters(text: str) -> Delimiters:
    """Read MSH-1 and MSH-2 from a message that starts with ``MSH``."""
    if len(text) < 4 or text[3] in "\r\n":
        raise InvalidHL7("segment 1 ('MSH'): no field separator (MSH-1) after 'MSH'")
    end = len(text)
    for stop in (text[3], "\r", "\n"):
        found = text.find(stop, 4)
        if found != -1:
            end = min(end, found)
    return _declared(text[3:end])


@lru_cache(maxsize=64)
def _declared(declared: str) -> Delimiters:
    """The delimiters MSH-1 and MSH-2 declare (``declared`` is the two together):
    checked once per distinct declaration, as nearly every message repeats one."""
    field, chars = declared[0], declared[1:]
    _check_char(field, "segment 1 ('MSH'): the field separator (MSH-1)")
    if len(chars) not in (4, 5):
        raise InvalidHL7(
            "segment 1 ('MSH'): the encoding characters (MSH-2) must be 4 or 5 characters "
            f"(component, repetition, escape, subcomponent[, truncation]), got {chars!r}"
        )
    for char in chars:
        _check_char(char, "segment 1 ('MSH'): each encoding character (MSH-2)")
    if len(set(declared)) != len(declared):
        raise InvalidHL7(
            "segment 1 ('MSH'): the field separator and encoding characters must all differ, "
            f"got {declared!r}"
        )
    return Delimiters(field, chars[0], chars[1], chars[2], chars[3], chars[4:] or None)
