"""What a reload says changed, from tables: each value by its YAML path, old → new,
in every section; secrets, header values and URL paths never shown."""

from __future__ import annotations

import pytest

from daemon.config.diff import changes, config_changes, restart_only
from daemon.config.loader import parse_config

BASE = """
database: sqlite:///x.db
channels:
  c:
    kind: http
    url: https://hooks.example/in/s3cret-path?token=t0ken
    rate: 20/s
    headers: {X-Api-Key: k3y}
    hmac: {secret: hm4c}
    retry: {max_attempts: 12, backoff: 30s}
"""


def channel(**replace: str):
    text = BASE
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse_config(text).channels["c"]


@pytest.mark.parametrize(
    ("replace", "said"),
    [
        ({}, []),
        ({"rate: 20/s": "rate: 5/s"}, ["rate 20/s → 5/s"]),
        ({"rate: 20/s": "concurrency: 8"}, ["rate 20/s → (none)", "concurrency 4 → 8"]),
        (
            {"max_attempts: 12, backoff: 30s": "max_attempts: 20, backoff: 1m30s"},
            ["retry.max_attempts 12 → 20", "retry.backoff 30s → 1m30s"],
        ),
        ({"k3y": "n3w"}, ["headers.X-Api-Key changed"]),
        (
            {"{X-Api-Key: k3y}": "{X-Other: v}"},
            ["headers.X-Api-Key removed", "headers.X-Other added"],
        ),
        ({"hm4c": "n3w"}, ["hmac.secret changed"]),
        (
            {"hooks.example/in/s3cret-path": "other.example:8443/in/other"},
            ["url https://hooks.example/… → https://other.example:8443/…"],
        ),
    ],
)
def test_what_a_reload_says_changed_in_a_channel(replace: dict[str, str], said: list[str]):
    found = changes(channel(), channel(**replace))
    assert sorted(found) == sorted(said)
    for secret in ("k3y", "hm4c", "s3cret-path", "t0ken", "n3w"):
        assert all(secret not in phrase for phrase in found)


# --- the whole file, by YAML path ---------------------------------------------------

FILE = """
database: sqlite:///var/outboxd.db
timezone: Asia/Jakarta
channels:
  hie:
    kind: mllp
    host: 127.0.0.1
    port: 2575
    rate: 20/s
    retry: {max_attempts: 12, backoff: 30s}
  bpjs:
    kind: bpjs_antrean
    base_url: http://127.0.0.1:8082/antreanrs
    cons_id: "10001"
    secret: s3cret-bpjs
    user_key: us3r-key
sources:
  rs:
    kind: khanza
    dsn: mysql://reader:pa55word@db.local/sik
    channel: bpjs
    interval: 30s
schedules:
  nightly:
    cron: "0 2 * * *"
    job: purge
    options: {messages_older_than: 30d}
  status:
    every: 15s
    job: status_check
    options: {channel: hie, url: "http://127.0.0.1:8081/status/{key}", statuses: {OK: confirmed}}
notify:
  ops-mail:
    kind: smtp
    host: 127.0.0.1
    port: 2525
    security: none
    from: outboxd@clinic.example
    to: [ops@clinic.example]
alerts:
  - {when: run_failed, notify: [ops-mail]}
  - {when: queue_age, channel: hie, over: 15m, notify: [ops-mail]}
webhooks:
  filing:
    secret: whsec_c2FtcGxlLXNlY3JldA==
    channel: hie
    message_key: /key
    statuses: {ACCEPTED: confirmed}
control:
  port: 8080
roles:
  dispatcher: {base_port: 9110, drain_timeout: 30s}
logging: {level: INFO}
"""

SECRETS = ("s3cret-bpjs", "us3r-key", "pa55word", "c2FtcGxl", "bmV3LXNl", "n3w-s3cret")


def config(*edits: tuple[str, str]):
    text = FILE
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse_config(text, environ={})


@pytest.mark.parametrize(
    ("edits", "said"),
    [
        ([], []),
        # schedules: the issue's own example, a cron with spaces quoted
        ([('cron: "0 2 * * *"', 'cron: "0 3 * * *"')],
         ['schedules.nightly.cron: "0 2 * * *" → "0 3 * * *"']),
        ([("every: 15s", "every: 1m")], ["schedules.status.every: 15s → 1m"]),
        ([("messages_older_than: 30d", "messages_older_than: 7d")],
         ["schedules.nightly.options.messages_older_than: 30d → 7d"]),
        ([("  nightly:\n", "  nightly:\n    enabled: false\n")],
         ["schedules.nightly.enabled: true → false"]),
        # channels
        ([("rate: 20/s", "rate: 5/s")], ["channels.hie.rate: 20/s → 5/s"]),
        ([("backoff: 30s", "backoff: 1m30s")], ["channels.hie.retry.backoff: 30s → 1m30s"]),
        ([("secret: s3cret-bpjs", "secret: n3w-s3cret")], ["channels.bpjs.secret: changed"]),
        ([("  bpjs:\n    kind", "  bpjs2:\n    kind"), ("channel: bpjs\n", "channel: bpjs2\n")],
         ["channels.bpjs: removed", "channels.bpjs2: added", "sources.rs.channel: bpjs → bpjs2"]),
        ([("base_url: http://127.0.0.1:8082/antreanrs", "base_url: http://127.0.0.1:8082/v2")],
         ["channels.bpjs.base_url: changed"]),
        # sources
        ([("interval: 30s", "interval: 10s")], ["sources.rs.interval: 30s → 10s"]),
        ([("pa55word@db.local", "pa55word@db2.local")], ["sources.rs.dsn: changed"]),
        # webhooks, notify, alerts (a list, by index)
        ([("secret: whsec_c2FtcGxlLXNlY3JldA==", "secret: whsec_bmV3LXNlY3JldA==")],
         ["webhooks.filing.secret: changed"]),
        ([("{ACCEPTED: confirmed}", "{ACCEPTED: confirmed, REJECTED: rejected}")],
         ["webhooks.filing.statuses.REJECTED: added"]),
        ([("message_key: /key", "message_key: /id")],
         ["webhooks.filing.message_key: /key → /id"]),
        ([("to: [ops@clinic.example]", "to: [ops@clinic.example, it@clinic.example]")],
         ["notify.ops-mail.to: [ops@clinic.example] → [ops@clinic.example, it@clinic.example]"]),
        ([("from: outboxd@clinic.example", "from: noreply@clinic.example")],
         ["notify.ops-mail.from: outboxd@clinic.example → noreply@clinic.example"]),
        ([("over: 15m", "over: 30m")], ["alerts[1].over: 15m → 30m"]),
        ([("  - {when: queue_age, channel: hie, over: 15m, notify: [ops-mail]}\n", "")],
         ["alerts[1]: removed"]),
        # the rest
        ([("timezone: Asia/Jakarta", "timezone: UTC")], ["timezone: Asia/Jakarta → UTC"]),
        ([("port: 8080", "port: 8088")], ["control.port: 8080 → 8088"]),
        ([("drain_timeout: 30s", "drain_timeout: 1m")],
         ["roles.dispatcher.drain_timeout: 30s → 1m"]),
        ([("level: INFO", "level: DEBUG")], ["logging.level: INFO → DEBUG"]),
        ([("sqlite:///var/outboxd.db", "sqlite:///var/other.db")], ["database.url: changed"]),
        # several at once, in the file's order
        ([("rate: 20/s", "rate: 5/s"), ('cron: "0 2 * * *"', 'cron: "30 2 * * *"')],
         ["channels.hie.rate: 20/s → 5/s", 'schedules.nightly.cron: "0 2 * * *" → "30 2 * * *"']),
    ],
)  # fmt: skip
def test_a_reload_names_each_changed_value_by_its_yaml_path(
    edits: list[tuple[str, str]], said: list[str]
):
    found = [str(c) for c in config_changes(config(), config(*edits))]
    assert found == said
    for secret in SECRETS:
        assert all(secret not in line for line in found), secret


def test_a_channel_of_another_kind_is_told_field_by_field():
    old = config()
    new = config(("kind: mllp\n    host: 127.0.0.1\n    port: 2575",
                  "kind: http\n    url: http://127.0.0.1:8081/hook"))  # fmt: skip
    found = [str(c) for c in config_changes(old, new)]
    assert found[0] == "channels.hie.kind: mllp → http"
    assert "channels.hie.host: removed" in found
    assert "channels.hie.url: added" in found


@pytest.mark.parametrize(
    ("path", "role", "only"),
    [
        ("database.url", "dispatcher", True),
        ("logging.level", "control", True),
        ("roles.dispatcher.base_port", "dispatcher", True),
        ("roles.dispatcher.drain_timeout", "dispatcher", False),
        ("roles.dispatcher.base_port", "scheduler", False),
        ("channels.hie.rate", "dispatcher", False),
        ("schedules.nightly.cron", "scheduler", False),
    ],
)
def test_what_a_role_reads_at_start_only(path: str, role: str, only: bool):
    assert restart_only(path, role) is only
