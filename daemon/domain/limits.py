"""Bounds that more than one layer checks: one definition of each, read by the store,
the request models (and so the API's schema) and the command line alike. The
standard library only: the command line's parser imports it."""

from __future__ import annotations

import re

# --- ids ------------------------------------------------------------------------------
MAX_ID = 2**63 - 1  # the largest id a row can have (a signed 64-bit integer)


def is_id(value: object) -> bool:
    """A whole number a row's id can be: 1 to ``MAX_ID`` (never a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def read_id(text: str) -> int | None:
    """The id ``text`` spells (ASCII digits, nothing else), or None."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value.lstrip("0")) > 19:
        return None
    number = int(value)
    return number if is_id(number) else None


# --- names ----------------------------------------------------------------------------
NAME_MAX = 64  # characters of a name: a channel's, a source's, a schedule's, a token's
NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"  # a name, whole (``fullmatch``)
NAME = re.compile(NAME_PATTERN)
NAME_RULE = "letters, digits, '_', '-', '.', starting with a letter, at most 64"


def is_name(value: object) -> bool:
    return isinstance(value, str) and NAME.fullmatch(value) is not None


# --- a host's name in the suite (``node:``) -------------------------------------------
NODE_MAX = 63  # characters of a node name: one DNS label's worth
# a node name, whole: what a host name may hold, no ':' (a lease owner is node:pid:role.n)
NODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
NODE = re.compile(NODE_PATTERN)
NODE_RULE = "letters, digits, '_', '-', '.', starting with a letter or a digit, at most 63"


# --- what a message is stored under ---------------------------------------------------
KEY_MAX = 255  # characters of a message's key (and of its prerequisite's, its group's)
KIND_MAX = 64  # characters of a payload kind
# each stored text field of a message and its longest length
MESSAGE_TEXT = {"channel": NAME_MAX, "key": KEY_MAX, "kind": KIND_MAX, "after_key": KEY_MAX,
                "group_key": KEY_MAX}  # fmt: skip


def text_problem(value: object, limit: int) -> str | None:
    """What keeps ``value`` from being stored as text, or None: the one rule for
    every string outboxd keeps that came from outside, whatever the database (a
    message's key, kind, channel or group; a partner's webhook-id, status or id;
    an operator's note or reason, stripped first). It must be 1 to ``limit``
    printable characters, not beginning or ending with a space: no line breaks,
    tabs, escapes, NULs (PostgreSQL refuses a NUL that SQLite would keep) or
    unpaired surrogates, since what is stored is shown in logs, tables and the
    page as it is."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return f"holds a character that cannot be shown ({bad!r})"
    if value != value.strip():
        return f"begins or ends with a space: {value[:60]!r}"
    return None


TEXT_RULE = "printable characters, no space at either end"  # ``text_problem`` in words


def storable(text: str | None) -> str | None:
    """Text outboxd keeps as it was given but did not choose (a partner's answer,
    an attempt's or a job's error) as every database keeps it: a NUL, which
    PostgreSQL refuses and SQLite would keep, is U+FFFD on both. (Text outboxd is
    asked to keep is held to ``text_problem`` instead, and refused.)"""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd")


# --- what a partner's callback names -----------------------------------------------------
WEBHOOK_ID_MAX = 255  # characters of a ``webhook-id`` header (the receipt's key)
PARTNER_TEXT_MAX = 255  # characters of a partner's status, or of its id for a message

# --- how much one call takes ------------------------------------------------------------
MAX_PAGE = 500  # the most items one page of a listing holds
LIST_WINDOW = 7 * 86400.0  # seconds: what a listing covers when no ``since`` is given
MAX_BATCH = 500  # messages one enqueue stores in one transaction
MAX_IDS = 10_000  # ids one operator action takes
BULK_BOUND = 10_000  # a filter matching more messages becomes a bulk operation, in batches
BULK_BATCH = 1000  # messages a batch of a bulk operation changes
MAX_RUNS = 500  # runs one page of a schedule's ledger holds
MAX_BACKFILL = 10_000  # runs one backfill may queue

# --- free text an operator writes --------------------------------------------------------
NOTE_MAX = 1000  # characters of a note (why a schedule is paused)
REASON_MAX = 200  # characters of the reason an operator gives for an action (a ticket)
TIME_MAX = 64  # characters of a time as text (ISO 8601)
CURSOR_MAX = 200  # characters of a listing's cursor
