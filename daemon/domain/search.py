"""Finding messages by what they say: the text of a payload (``q``), and the
fields of an HL7 v2 message an operator looks a message up by, kept when the
message is stored and matched exactly. One definition of each name, bound and
position, read by the store, the request models, the command line and the page.

Why named filters (``mrn=12345``) and not a syntax inside ``q`` (``q=PID-3:12345``):
each is a parameter the API's document lists and checks on its own, they combine
with each other and with ``q`` without a grammar to learn or to escape, and a
colon or a segment name stays plain text to search for (``q=PID-3`` finds the
text "PID-3")."""

from __future__ import annotations

# name → (what an operator calls it, where an HL7 v2 message holds it)
SEARCH_FIELDS: dict[str, tuple[str, str]] = {
    "mrn": ("patient id (MRN)", "PID-3"),
    "control_id": ("message control id", "MSH-10"),
    "message_type": ("message type", "MSH-9"),
    "visit_number": ("visit number", "PV1-19"),
}
FIELD_NAMES = tuple(SEARCH_FIELDS)

TEXT_MIN = 3  # characters of a text search: the index is of three-character runs
TEXT_MAX = 100  # characters of a text search (a request line must hold every filter)
FIELD_VALUE_MAX = 64  # characters of a field's value (a longer one is not kept)
FIELD_VALUE_PATTERN = r"[ -~]{1,64}"  # as the API takes it: printable ASCII, as HL7 ids are

TEXT_RULE = f"{TEXT_MIN} to {TEXT_MAX} printable characters"


def text_problem(value: str) -> str | None:
    """What keeps ``value`` from being a text search, or None."""
    if len(value) < TEXT_MIN:
        return (
            f"{value!r} is shorter than {TEXT_MIN} characters: the text index finds "
            f"runs of {TEXT_MIN} or more (use a field filter for a short value)"
        )
    if len(value) > TEXT_MAX:
        return f"is longer than {TEXT_MAX} characters"
    if not value.isprintable():
        return "holds a character that cannot be shown (a line break, tab or escape)"
    return None


def field_problem(value: str) -> str | None:
    """What keeps ``value`` from being a field's value to match, or None."""
    if not value:
        return "is empty"
    if len(value) > FIELD_VALUE_MAX:
        return f"is longer than {FIELD_VALUE_MAX} characters"
    if not value.isprintable():
        return "holds a character that cannot be shown"
    return None


def keepable(value: str) -> bool:
    """Whether a field's value read from a payload is kept (and so can be matched)."""
    return bool(value) and field_problem(value) is None
