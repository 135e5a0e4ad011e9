"""The ``control:`` and ``webhooks:`` sections: what the file may say, and each
mistake named with its path (exit 78 at check-config)."""

from __future__ import annotations

import textwrap

import pytest

from daemon.config.errors import ConfigError
from daemon.config.loader import parse_config
from daemon.domain.auth import hash_token

HASH = hash_token("obx_example")
SECRET = "whsec_c2FtcGxlLXNlY3JldA=="
BASE = """
database: sqlite:///var/outboxd.db
channels:
  filings: {kind: http, url: "https://filing.example/api/submissions"}
"""


def parse(text: str, env: dict[str, str] | None = None):
    return parse_config(BASE + textwrap.dedent(text), source="test.yaml", environ=env or {})


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    return [str(issue) for issue in caught.value.issues]


# --- control ---------------------------------------------------------------------------


def test_control_defaults():
    control = parse("").control
    assert (control.host, control.port, control.tokens, control.max_body) == (
        "127.0.0.1",
        8080,
        [],
        1 << 20,
    )


def test_control_in_full():
    settings = parse(
        f"""
        control:
          host: 0.0.0.0
          port: ${{OUTBOXD_CONTROL_PORT:-9150}}
          max_body: 256KiB
          tokens:
            - {{name: ops, role: admin, sha256: "{HASH}"}}
            - {{name: dash, role: viewer, sha256: "{HASH.upper()}"}}
        """
    )
    control = settings.control
    assert (control.host, control.port, control.max_body) == ("0.0.0.0", 9150, 256 * 1024)
    assert [(t.name, t.role) for t in control.tokens] == [("ops", "admin"), ("dash", "viewer")]
    assert control.tokens[1].sha256 == HASH  # kept in lowercase
    assert parse(
        "control: {port: '${OUTBOXD_CONTROL_PORT:-9150}'}", {"OUTBOXD_CONTROL_PORT": "9141"}
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"])
def test_a_loopback_host_needs_no_tokens(host: str):
    assert parse(f"control: {{host: '{host}'}}").control.host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "control.example"])
def test_another_host_without_tokens_is_an_error_naming_control_host(host: str):
    for tokens in ("", ", tokens: []"):
        [problem] = problems(f"control: {{host: '{host}'{tokens}}}")
        assert problem.startswith(f"control.host: {host!r} is reachable from other machines")
        assert "control.tokens" in problem


@pytest.mark.parametrize(
    ("sha256", "words"),
    [
        ("obx_the-token-itself", "64 hex digits"),
        ("ab" * 31, "64 hex digits"),
        ("ab" * 33, "64 hex digits"),
        ("zz" * 32, "64 hex digits"),
    ],
)
def test_a_sha256_that_is_not_one(sha256: str, words: str):
    [problem] = problems(f"control: {{tokens: [{{name: a, role: admin, sha256: '{sha256}'}}]}}")
    assert problem.startswith("control.tokens[0].sha256: ") and words in problem
    assert "not the token itself" in problem


def test_a_sha256_given_as_a_number_is_refused():
    [problem] = problems("control: {tokens: [{name: a, role: admin, sha256: 1234}]}")
    assert problem.startswith("control.tokens[0].sha256: ")


def test_duplicate_token_names():
    [problem] = problems(
        f"""
        control:
          tokens:
            - {{name: ops, role: admin, sha256: "{HASH}"}}
            - {{name: dash, role: viewer, sha256: "{HASH}"}}
            - {{name: ops, role: viewer, sha256: "{HASH}"}}
        """
    )
    assert problem == (
        "control.tokens: token name 'ops' is given twice (tokens[0] and tokens[2]): "
        "every token needs a name of its own"
    )


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        (f"{{name: a, role: root, sha256: '{HASH}'}}", "control.tokens[0].role"),
        (f"{{name: 'a b', role: admin, sha256: '{HASH}'}}", "control.tokens[0].name"),
        (f"{{name: a, role: admin, sha256: '{HASH}', token: x}}", "control.tokens[0].token"),
        ("{name: a, role: admin}", "control.tokens[0].sha256"),
    ],
)
def test_a_token_entry_that_is_wrong(entry: str, path: str):
    assert any(p.startswith(f"{path}: ") for p in problems(f"control: {{tokens: [{entry}]}}"))


def test_the_old_single_token_key_is_refused():
    [problem] = problems("control: {token: abc}")
    assert problem.startswith("control.token: unknown key (did you mean 'tokens'?)")


@pytest.mark.parametrize(
    ("value", "words"),
    [("1MB", "invalid size"), ("512", "greater than or equal to 1024"), ("1GiB", "less than")],
)
def test_max_body(value: str, words: str):
    [problem] = problems(f"control: {{max_body: '{value}'}}")
    assert problem.startswith("control.max_body: ") and words in problem


# --- webhooks ----------------------------------------------------------------------------


WEBHOOK = """
webhooks:
  filer:
    secret: "{secret}"
    channel: {channel}
    message_key: /data/key
    status: /status
    statuses: {{"ACCEPTED": confirmed, "REFUSED": rejected}}
"""


def test_a_webhook():
    settings = parse(WEBHOOK.format(secret=SECRET, channel="filings"))
    filer = settings.webhooks["filer"]
    assert (filer.channel, filer.message_key, filer.message_ref) == ("filings", "/data/key", None)
    assert filer.statuses == {"ACCEPTED": "confirmed", "REFUSED": "rejected"}
    assert filer.tolerance == 300.0 and filer.id_pointer == "/id"
    assert SECRET not in repr(settings)
    assert filer.keys() == [b"sample-secret"]


def test_a_webhook_with_rotating_secrets_and_the_partners_id():
    new = "whsec_bmV3LXNlY3JldA=="
    settings = parse(
        f"""
        webhooks:
          filer:
            secrets: ["{SECRET}", "{new}"]
            channel: filings
            message_ref: /submission_id
            id_pointer: /data/id
            statuses: {{"OK": confirmed}}
            tolerance: 2m
        """
    )
    filer = settings.webhooks["filer"]
    assert filer.keys() == [b"sample-secret", b"new-secret"]
    assert (filer.message_ref, filer.id_pointer, filer.tolerance) == (
        "/submission_id",
        "/data/id",
        120.0,
    )


def test_a_webhook_on_an_unknown_channel():
    [problem] = problems(WEBHOOK.format(secret=SECRET, channel="nowhere"))
    assert problem == "webhooks.filer.channel: no channel named 'nowhere' (channels: filings)"


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ("message_key: /k\n    message_ref: /r", "give message_key or message_ref, one of them"),
        ("", "give message_key or message_ref, one of them"),
    ],
)
def test_message_key_or_message_ref_exactly_one(keys: str, words: str):
    text = f"""
webhooks:
  filer:
    secret: "{SECRET}"
    channel: filings
    {keys}
    statuses: {{"OK": confirmed}}
"""
    assert problems(text) == [f"webhooks.filer: {words}"]


def test_secret_or_secrets_exactly_one():
    both = WEBHOOK.format(secret=SECRET, channel="filings").replace(
        "    channel:", f'    secrets: ["{SECRET}"]\n    channel:'
    )
    assert problems(both) == [
        "webhooks.filer: give secret or secrets (old and new, while rotating), one of them"
    ]


@pytest.mark.parametrize(
    ("pointer", "words"),
    [
        ("data/key", "it starts with /"),
        ("/data~2key", "~ is written ~0"),
        ("/data~", "~ is written ~0"),
        ("''", "it starts with /"),
    ],
)
def test_a_pointer_that_is_not_one(pointer: str, words: str):
    text = WEBHOOK.format(secret=SECRET, channel="filings").replace("/data/key", pointer)
    [problem] = problems(text)
    assert problem.startswith("webhooks.filer.message_key: not a JSON pointer") and words in problem


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "plain-text"])
def test_a_secret_that_is_not_a_whsec_secret(secret: str):
    [problem] = problems(WEBHOOK.format(secret=secret, channel="filings"))
    assert problem.startswith("webhooks.filer.secret: a webhook secret")
    assert secret not in problem or secret == "whsec_"


def test_a_bad_secret_among_several_is_named_by_its_place():
    text = f"""
webhooks:
  filer:
    secrets: ["{SECRET}", "whsec_???"]
    channel: filings
    message_key: /k
    statuses: {{"OK": confirmed}}
"""
    assert problems(text) == [
        "webhooks.filer.secrets[1]: a webhook secret is whsec_ and the base64 of its key"
    ]


def test_statuses_map_to_what_a_tracked_message_becomes():
    text = WEBHOOK.format(secret=SECRET, channel="filings").replace(
        '"REFUSED": rejected', '"REFUSED": failed'
    )
    [problem] = problems(text)
    assert problem.startswith("webhooks.filer.statuses.REFUSED: ")
    assert "'confirmed' or 'rejected'" in problem


@pytest.mark.parametrize("name", ["a/b", "..", "has space", "-x"])
def test_a_webhook_name_is_a_safe_path_segment(name: str):
    text = WEBHOOK.format(secret=SECRET, channel="filings").replace("filer:", f"'{name}':")
    assert any(p.startswith(f"webhooks.{name}: invalid name") for p in problems(text))


def test_unknown_keys_in_a_webhook():
    text = WEBHOOK.format(secret=SECRET, channel="filings").replace("    status:", "    stauts:")
    [problem] = problems(text)
    assert problem == "webhooks.filer.stauts: unknown key (did you mean 'status'?)"
