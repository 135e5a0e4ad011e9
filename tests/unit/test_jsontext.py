"""JSON as RFC 8259 has it: what Python's parser lets through and a partner's
refuses (NaN, Infinity, a number beyond a double) or reads otherwise (a key given
twice) is refused, with where it is."""

from __future__ import annotations

import json

import pytest

from daemon.domain.jsontext import NotJson, loads


@pytest.mark.parametrize(
    ("text", "reason", "path"),
    [
        ('{"v": NaN}', "NaN is not a JSON number", "v"),
        ("[1, -Infinity]", "-Infinity is not a JSON number", "[1]"),
        ('{"a": {"b": [Infinity]}}', "Infinity is not a JSON number", "a.b[0]"),
        ('{"v": 1e400}', "too large", "v"),
        ('{"v": -1E+999}', "too large", "v"),
        ('{"a": 1, "a": 2}', "the key 'a' is given twice", "a"),
        ('{"m": [{"k": 1}, {"k": 2, "k": 2}]}', "given twice", "m[1].k"),
        ("NaN", "NaN is not a JSON number", None),
        ("[" * 100_000, "nested too deeply", None),
        ("{'a': 1}", "Expecting property name", None),
        (b'"\xff"', "can't decode", None),
        ("", "Expecting value", None),
    ],
)
def test_what_is_not_json_is_refused_saying_why_and_where(text, reason, path):
    with pytest.raises(NotJson) as caught:
        loads(text)
    assert reason in str(caught.value) and caught.value.path == path


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1.5, "b": -0.0, "c": 1e308, "d": 2**70, "e": [None, True, "x\u00e9"]},
        {"a": {"a": {"a": 1}}},  # the same key in nested objects is no repeat
        [],
        "text",
    ],
)
def test_json_reads_as_the_standard_library_reads_it(value):
    text = json.dumps(value)
    assert loads(text) == json.loads(text) == value
    assert loads(text.encode()) == value
