"""The bounds every layer reads (``daemon.domain.limits``) and the refusals that
carry their kind and field, from tables; a refusal keeps them when it crosses to
another process (the store's worker answers with a pickle)."""

from __future__ import annotations

import pickle

import pytest

from daemon.domain.errors import Refused
from daemon.domain.limits import MAX_ID, is_id, is_name, read_id, text_problem
from daemon.domain.messages import InvalidMessage, UnknownPrerequisite
from daemon.domain.schedules import ScheduleError
from daemon.domain.selection import InvalidCursor, MessageFilter, OperatorRefused, check_selection


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1), (" 42 ", 42), ("007", 7), (str(MAX_ID), MAX_ID), ("0" * 30 + "5", 5),
        ("0", None), (str(MAX_ID + 1), None), ("-1", None), ("1.5", None), ("", None),
        ("abc", None), ("١٢", None), ("9" * 5000, None),
    ],
)  # fmt: skip
def test_read_id(text: str, expected: int | None):
    assert read_id(text) == expected


def test_is_id_takes_no_boolean_and_no_text():
    assert is_id(1) and is_id(MAX_ID)
    assert not any(is_id(v) for v in (0, -1, MAX_ID + 1, True, "1", 1.0, None))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("visit-1", None), ("a b", None), ("k" * 255, None),
        ("", "must be a non-empty string"), (None, "must be a non-empty string"),
        (7, "must be a non-empty string"), ("k" * 256, "is longer than 255 characters"),
        ("a\nb", "holds a character that cannot be shown ('\\n')"),
        ("a\x00", "holds a character that cannot be shown ('\\x00')"),
        (" a", "begins or ends with a space: ' a'"), ("a ", "begins or ends with a space: 'a '"),
    ],
)  # fmt: skip
def test_text_problem(value: object, problem: str | None):
    assert text_problem(value, 255) == problem


@pytest.mark.parametrize(
    ("name", "ok"),
    [("hie", True), ("a" * 64, True), ("a.b_c-9", True), ("a" * 65, False), ("9a", False),
     ("a b", False), ("", False), ("hie\n", False)],
)  # fmt: skip
def test_is_name(name: str, ok: bool):
    assert is_name(name) is ok


@pytest.mark.parametrize(
    "error",
    [
        InvalidMessage("key is longer than 255 characters", "key", 3),
        UnknownPrerequisite("prerequisite 'a' of 'b' does not exist", "after_key", 0),
        OperatorRefused("unknown channel 'x'", "channel"),
        InvalidCursor("not a listing cursor"),
        ScheduleError("no schedule named 'x'", "missing"),
        Refused("no message with id 9", "missing", "id"),
    ],
)
def test_a_refusal_keeps_its_kind_and_field_across_a_pickle(error: Refused):
    again = pickle.loads(pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(again) is type(error) and str(again) == str(error)
    assert (again.kind, again.field) == (error.kind, error.field)
    assert getattr(again, "index", None) == getattr(error, "index", None)


@pytest.mark.parametrize(
    ("selector", "field", "says"),
    [
        (MessageFilter(ids=(1,), channel="hie"), "filter", "not both"),
        (MessageFilter(ids=(0,)), "ids", "whole numbers from 1"),
        (MessageFilter(statuses=("lost",)), "status", "unknown status 'lost'"),
        (MessageFilter(key_prefix="a"), "key", "needs its channel"),
        (MessageFilter(channel="nosuch"), "channel", "unknown channel 'nosuch'"),
        (MessageFilter(channel="a\x00"), "channel", "cannot be one"),
    ],
)
def test_a_selection_refused_names_its_field(selector: MessageFilter, field: str, says: str):
    with pytest.raises(OperatorRefused, match=says) as refused:
        check_selection(selector, known_channels={"hie"})
    assert (refused.value.kind, refused.value.field) == ("usage", field)
