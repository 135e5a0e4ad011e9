import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.config.interpolation import InterpolationError, interpolate

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
values = st.text(max_size=30)
plain = st.text(max_size=40).filter(lambda s: "$" not in s)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:-a:b/c}", {}, "a:b/c"),
        ("${A:?needed}", {"A": "v"}, "v"),
        ("$$", {}, "$"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("cost $5", {}, "cost $5"),
        ("a$", {}, "a$"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${A}", {"A": "${B}"}, "${B}"),
    ],
)
def test_table(text, env, expected):
    assert interpolate(text, env) == expected


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("${A}", {}, "environment variable A is not set"),
        ("${A:?set the secret}", {}, "environment variable A: set the secret"),
        ("${A:?set the secret}", {"A": ""}, "set the secret"),
        ("${A:?}", {}, "A: must be set"),
        ("${A", {"A": "x"}, "unclosed"),
        ("${}", {}, "invalid variable reference"),
        ("${1A}", {}, "invalid variable reference"),
        ("${A-x}", {}, "expected ${A}"),
        ("${A:+x}", {}, "expected ${A}"),
    ],
)
def test_errors(text, env, message):
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$").replace("{", r"\{")):
        interpolate(text, env)


@given(plain)
def test_text_without_dollar_is_unchanged(text):
    assert interpolate(text, {}) == text


@given(plain, names, values, plain)
def test_set_variable_is_substituted_verbatim(before, name, value, after):
    # the value is inserted as it is: never interpolated again, whatever it holds
    assert interpolate(f"{before}${{{name}}}{after}", {name: value}) == before + value + after


@given(names, plain.filter(lambda s: "}" not in s))
def test_default_used_only_when_unset_or_empty(name, default):
    reference = f"${{{name}:-{default}}}"
    assert interpolate(reference, {}) == default
    assert interpolate(reference, {name: ""}) == default
    assert interpolate(reference, {name: "v"}) == "v"


@given(st.lists(st.one_of(plain, st.just("$$")), max_size=8))
def test_double_dollar_is_one_literal_dollar(parts):
    text = "".join(parts)
    assert interpolate(text, {}) == text.replace("$$", "$")


@given(names, values)
def test_required_variable(name, value):
    if value:
        assert interpolate(f"${{{name}:?missing}}", {name: value}) == value
    else:
        with pytest.raises(InterpolationError):
            interpolate(f"${{{name}:?missing}}", {name: value})
