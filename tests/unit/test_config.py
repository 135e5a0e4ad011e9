import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.channels.bpjs_antrean.settings import BpjsAntreanSettings
from daemon.channels.mllp.settings import MllpSettings
from daemon.config.errors import ConfigError
from daemon.config.loader import load_config, parse_config

MINIMAL = "database: sqlite:///var/outboxd.db\n"

FULL = """
database: postgresql://outboxd:${DB_PASSWORD}@127.0.0.1/outboxd
timezone: Asia/Jakarta
channels:
  malaffi:
    kind: mllp
    host: 127.0.0.1
    port: 2575
    rate: 1/s
    retry: {max_attempts: 12, backoff: 30s, max_backoff: 1h, max_age: 24h}
  bpjs:
    kind: bpjs_antrean
    base_url: https://apijkn.example/antreanrs
    cons_id: "1234"
    secret: ${BPJS_SECRET:?set BPJS_SECRET}
    user_key: ${BPJS_USER_KEY}
    rate: 10/s
  hook:
    kind: http
    url: https://hooks.example/outboxd
    headers: {X-Source: outboxd}
sources:
  khanza:
    kind: khanza
    dsn: mysql://khanza:${KHANZA_PASSWORD:-}@127.0.0.1/sik
    channel: bpjs
    interval: 15s
schedules:
  purge-old:
    cron: "0 3 * * 0"
    job: purge
    options: {messages_older_than: 30d}
control:
  port: 8088
  tokens:
    - name: ops
      role: admin
      sha256: "abababababababababababababababababababababababababababababababab"
"""
ENV = {
    "DB_PASSWORD": "pw-secret",
    "BPJS_SECRET": "bpjs-secret",
    "BPJS_USER_KEY": "user-key-secret",
}


def parse(text: str, env: dict[str, str] | None = None):
    return parse_config(textwrap.dedent(text), source="test.yaml", environ=env or {})


def errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return [str(issue) for issue in info.value.issues]


def test_minimal_file_gets_defaults():
    settings = parse(MINIMAL)
    assert settings.timezone == "UTC"
    assert settings.channels == {}
    assert settings.roles.dispatcher.base_port == 9110
    assert settings.database.busy_timeout == 10.0


def test_full_file():
    settings = parse(FULL, ENV)
    malaffi = settings.channels["malaffi"]
    assert isinstance(malaffi, MllpSettings)
    assert malaffi.rate is not None and malaffi.rate.per_second == 1.0
    assert malaffi.retry.max_backoff == 3600.0
    assert malaffi.retry.max_age == 86400.0
    bpjs = settings.channels["bpjs"]
    assert isinstance(bpjs, BpjsAntreanSettings)
    assert bpjs.secret.get_secret_value() == "bpjs-secret"
    assert settings.sources["khanza"].interval == 15.0
    assert settings.sources["khanza"].dsn.get_secret_value() == "mysql://khanza:@127.0.0.1/sik"
    assert settings.schedules["purge-old"].cron == "0 3 * * 0"
    assert settings.control.tokens[0].role == "admin"


def test_secrets_never_in_repr():
    settings = parse(FULL, ENV)
    shown = repr(settings) + str(settings)
    for secret in ENV.values():
        assert secret not in shown


def test_settings_are_frozen():
    settings = parse(MINIMAL)
    with pytest.raises(ValueError):
        settings.timezone = "Asia/Jakarta"  # type: ignore[misc]


# files with one mistake each, and the line the error about it starts with
ERRORS_BY_PATH = [
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, host: h, port: 1, rte: 1/s}
            """,
        "channels.malaffi.rte: unknown key (did you mean 'rate'?)",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, host: h, port: 1, retry: {max_attempt: 3}}
            """,
        "channels.malaffi.retry.max_attempt: unknown key (did you mean 'max_attempts'?)",
    ),
    (
        """
            database: sqlite:///x.db
            databse: x
            """,
        "databse: unknown key (did you mean 'database'?)",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, host: h, port: many}
            """,
        "channels.malaffi.port: expected a whole number, got 'many'",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, host: h, port: 70000}
            """,
        "channels.malaffi.port: Input should be less than or equal to 65535",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, port: 1}
            """,
        "channels.malaffi.host: required key is missing",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: carrier-pigeon}
            """,
        "channels.malaffi.kind: unknown kind 'carrier-pigeon'",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {host: h}
            """,
        "channels.malaffi.kind: required key is missing",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, host: h, port: 1, rate: fast}
            """,
        "channels.malaffi.rate: invalid rate 'fast'",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, host: h, port: 1, retry: {backoff: 1h, max_backoff: 1m}}
            """,
        "channels.malaffi.retry: max_backoff must not be smaller than backoff",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              malaffi: {kind: mllp, host: h, port: 1, lease: soon}
            """,
        "channels.malaffi.lease: invalid duration 'soon'",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              hook: {kind: http, url: ftp://x}
            """,
        "channels.hook.url: expected an http:// or https:// URL",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              "bad name": {kind: http, url: http://x}
            """,
        "channels.bad name: invalid name 'bad name'",
    ),
    (
        """
            database: mysql://root@127.0.0.1/x
            """,
        "database.url: unsupported database scheme 'mysql'",
    ),
    (
        """
            database: sqlite:///x.db
            timezone: Asia/Jakartaa
            """,
        "timezone: unknown time zone 'Asia/Jakartaa'",
    ),
    (
        """
            database: sqlite:///x.db
            schedules:
              nightly: {cron: "0 2 * *", job: purge}
            """,
        "schedules.nightly.cron: invalid cron expression '0 2 * *': expected 5 fields",
    ),
    (  # an expression no date matches: 31 April, June, September, November
        """
            database: sqlite:///x.db
            schedules:
              month-end: {cron: "0 0 31 4,6,9,11 *", job: purge}
            """,
        "schedules.month-end.cron: invalid cron expression '0 0 31 4,6,9,11 *': it never fires",
    ),
    (
        """
            database: sqlite:///x.db
            schedules:
              weekend: {cron: "0 8 * * sat,sun", skip: [weekends], job: purge}
            """,
        "schedules.weekend: cron '0 8 * * sat,sun' runs on weekends only and skip: [weekends]",
    ),
    (
        """
            database: sqlite:///x.db
            schedules:
              nightly: {cron: "0 2 * * *", job: defrag}
            """,
        "schedules.nightly.job: unknown job 'defrag'; expected one of 'purge', 'export'",
    ),
    (  # the options of a job that needs some, not given
        """
            database: sqlite:///x.db
            schedules:
              ping: {every: 1m, job: http}
            """,
        "schedules.ping.options: required key is missing (with url)",
    ),
    (  # a rule of the schedule itself: the schedule's path, not the job's name
        """
            database: sqlite:///x.db
            schedules:
              p: {job: purge}
            """,
        "schedules.p: give cron or every, one of them",
    ),
    (  # no job: the kinds there are
        """
            database: sqlite:///x.db
            schedules:
              p: {every: 1h}
            """,
        "schedules.p.job: required key is missing (one of 'purge', 'export', 'status_check'",
    ),
    (  # no kind: the kinds there are
        """
            database: sqlite:///x.db
            channels:
              c: {host: x, port: 1}
            """,
        "channels.c.kind: required key is missing (one of 'mllp', 'http', 'bpjs_antrean', 'fhir')",
    ),
    (  # a value that is none of a union's members: one problem, saying what it may be
        """
            database: sqlite:///x.db
            schedules:
              p: {every: 1h, job: http, options: {url: "http://x/", body: 5}}
            """,
        "schedules.p.options.body: expected a string or a mapping or a list, got int",
    ),
    (
        """
            database: sqlite:///x.db
            channels:
              c: {kind: http, url: "http://x"}
            sources:
              k: {kind: khanza, dsn: "mysql://x", channel: bpjs}
            """,
        "sources.k.channel: no channel named 'bpjs' (channels: c)",
    ),
    (
        """
            database: sqlite:///x.db
            roles:
              dispatcher: {base_port: 8080}
            """,
        "roles.dispatcher.base_port: port 8080 is already used by control.port",
    ),
    (
        """
            channels: {}
            """,
        "database: required key is missing",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS_BY_PATH)
def test_error_names_its_path(text, expected):
    assert any(e.startswith(expected) for e in errors(text)), errors(text)


def test_every_error_is_reported_at_once():
    found = errors(
        """
        database: sqlite:///x.db
        timezone: Nowhere/City
        channels:
          a: {kind: mllp, host: h, port: 0}
          b: {kind: http, url: "${HOOK_URL:?set HOOK_URL}"}
        schedules:
          s: {cron: "* * *", job: purge}
        sources:
          k: {kind: khanza, dsn: "x", channel: nope}
        """
    )
    paths = [e.split(":")[0] for e in found]
    assert paths == [
        "channels.b.url",
        "timezone",
        "channels.a.port",
        "schedules.s.cron",
        "sources.k.channel",
    ]


def test_unset_required_variable_names_path_and_message():
    found = errors(FULL, {k: v for k, v in ENV.items() if k != "BPJS_SECRET"})
    assert found == ["channels.bpjs.secret: environment variable BPJS_SECRET: set BPJS_SECRET"]


def test_unset_plain_variable_is_an_error():
    found = errors(FULL, {k: v for k, v in ENV.items() if k != "BPJS_USER_KEY"})
    assert found[0].startswith(
        "channels.bpjs.user_key: environment variable BPJS_USER_KEY is not set"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("database: [unclosed", "invalid YAML: line 1"),
        ("database: x\n  bad: indent\n", "invalid YAML: line 2"),
        ("database: a\ndatabase: b\n", "duplicate key 'database' (first given at line 1)"),
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping at the top, got list"),
    ],
)
def test_malformed_yaml(text, expected):
    found = errors(text)
    assert len(found) == 1
    assert expected in found[0]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", {})


def test_config_from_environment_variable(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text(MINIMAL)
    assert load_config(None, {"OUTBOXD_CONFIG": str(path)}).database.url.get_secret_value()
    with pytest.raises(ConfigError, match="no config file"):
        load_config(None, {})


# Values that would change the document's shape if substituted into the YAML text.
yamlish = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["a: b", "- x\n- y", "{kind: http}", "'quoted'", "\n  nested: 1", "${X}", "$$"]
    ),
)


@given(yamlish)
def test_interpolated_value_never_changes_structure(value):
    text = """
    database: sqlite:///x.db
    schedules:
      nightly:
        cron: "0 2 * * *"
        job: http
        options: {url: "http://127.0.0.1:9/", body: "${NOTE}"}
    """
    settings = parse(text, {"NOTE": value})
    assert settings.schedules["nightly"].options.body == value
    assert list(settings.schedules) == ["nightly"]


def test_khanza_source_must_feed_a_bpjs_channel():
    found = errors(
        """
        database: sqlite:///x.db
        channels:
          hook: {kind: http, url: "http://x"}
        sources:
          k: {kind: khanza, dsn: "mysql://x", channel: hook}
        """
    )
    assert found == [
        "sources.k.channel: a khanza source sends to a bpjs_antrean channel; 'hook' is 'http'"
    ]


def test_an_unknown_event_loop_is_refused():
    with pytest.raises(ConfigError) as info:
        parse_config(
            "database: sqlite:///x.db\nroles:\n  dispatcher: {base_port: 9110, event_loop: trio}\n"
        )
    assert "roles.dispatcher.event_loop" in str(info.value)
    assert parse_config("database: sqlite:///x.db").roles.dispatcher.event_loop == "uvloop"


def test_the_dispatcher_runs_its_store_in_a_process_unless_told_not_to():
    def dispatcher(roles: str):
        return parse_config(f"database: sqlite:///x.db\nroles:\n{roles}").roles.dispatcher

    assert parse_config("database: sqlite:///x.db").roles.dispatcher.store_process is True
    # a mapping that leaves it out keeps the dispatcher's default
    assert dispatcher("  dispatcher: {base_port: 9200}\n").store_process is True
    assert (
        dispatcher("  dispatcher: {base_port: 9200, store_process: false}\n").store_process is False
    )
    with pytest.raises(ConfigError) as info:
        dispatcher("  dispatcher: {base_port: 9200, store_process: sometimes}\n")
    assert "roles.dispatcher.store_process" in str(info.value)
    with pytest.raises(ConfigError) as info:  # only the dispatcher has the choice
        parse_config(
            "database: sqlite:///x.db\nroles:\n  poller: {base_port: 9100, store_process: true}\n"
        )
    assert "roles.poller.store_process" in str(info.value)


# --- hostile values: refused by the check, with the path -------------------------------

H = "channels: {c: {kind: mllp, host: h, port: 2575, %s}}\n"


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        (H % "lease: .inf", "channels.c.lease: a duration must be a finite number"),
        (H % "lease: 99999999999w", "channels.c.lease: duration '99999999999w' is longer than"),
        (H % "lease: 400d", "channels.c.lease: duration '400d' is too long: at most 366d"),
        (H % "retry: {backoff: 1e300}", "channels.c.retry.backoff: invalid duration '1e300'"),
        (H % "retry: {max_age: 99999999999999w}", "channels.c.retry.max_age: duration"),
        (H % "encoding: utf-16", "channels.c.encoding: encoding 'utf-16' does not keep"),
        (H % "encoding: cp037", "channels.c.encoding: encoding 'cp037' does not keep"),
        (H % "encoding: rot13", "channels.c.encoding: encoding 'rot13' does not keep"),
        (H % "encoding: idna", "channels.c.encoding: encoding 'idna' does not keep"),
        (H % "tls: {ca_file: /no/such.pem}", "channels.c.tls.ca_file: cannot read /no/such.pem"),
        (H % "concurrency: true", "channels.c.concurrency: expected a whole number, got a boolean"),
        (H % "burst: true", "channels.c.burst: expected a whole number, got a boolean"),
        (H % "ordered: 1", "channels.c.ordered: expected true or false, got 1"),
        (H % "batch_size: 1.5", "channels.c.batch_size: expected a whole number, got 1.5"),
        (H % "rate: 9999999999/s", "channels.c.rate: invalid rate"),
        (H.replace("port: 2575", "port: true") % "lease: 1s", "channels.c.port: expected a whole"),
        (H.replace("host: h", "host: 'a b'") % "lease: 1s", "channels.c.host: not a host name"),
        ("control: {port: [1, 2]}\n", "control.port: expected a whole number, got list"),
        ("control: {port: 99999}\n", "control.port: Input should be less than or equal to 65535"),
        ("roles: {poller: {base_port: true}}\n", "roles.poller.base_port: expected a whole"),
        ("database: {url: 'postgresql://u@h:70000/db'}\n", "database.url: not a database URL"),
        ("database: {url: 'postgresql://u@h:" + "9" * 5000 + "/db'}\n", "database.url: not a"),
        ("database: {url: sqlite:///x.db, busy_timeout: .inf}\n", "database.busy_timeout: a"),
        ("timezone: " + "A" * 5000 + "\n", "timezone: unknown time zone"),
    ],
)
def test_a_value_the_daemons_could_not_run_with_is_refused(text: str, issue: str):
    document = text if text.startswith("database:") else MINIMAL + text
    with pytest.raises(ConfigError) as caught:
        parse(document)
    assert issue in str(caught.value)


def test_merge_keys_and_x_keys_give_channel_defaults():
    settings = parse(
        MINIMAL
        + "x-defaults: &d {kind: http, rate: 5/s, retry: {max_age: 12h}}\n"
        + "channels:\n"
        + "  a: {<<: *d, url: 'http://a.example/'}\n"
        + "  b: {<<: *d, url: 'http://b.example/', rate: 1/s}\n"
    )
    assert (str(settings.channels["a"].rate), str(settings.channels["b"].rate)) == ("5/s", "1/s")
    assert settings.channels["b"].retry.max_age == 12 * 3600


def test_a_key_given_twice_is_still_refused_beside_a_merge():
    with pytest.raises(ConfigError, match="duplicate key 'url'"):
        parse(
            MINIMAL
            + "x-d: &d {kind: http}\nchannels: {a: {<<: *d, url: 'http://a/', url: 'http://b/'}}\n"
        )


def test_a_line_break_from_a_variable_never_reaches_the_summary():
    from daemon.operator.summaries import config_summary

    with pytest.raises(ConfigError, match=r"channels\.h\.url: a URL has no spaces"):
        parse(
            MINIMAL + "channels: {h: {kind: http, url: 'http://a.example/${P}'}}\n", {"P": "x\ny"}
        )
    with pytest.raises(ConfigError, match=r"channels\.b\.cons_id: must be one line"):
        parse(
            MINIMAL + "channels: {b: {kind: bpjs_antrean, base_url: 'http://b.example/',"
            " cons_id: '${C}', secret: s, user_key: k}}\n",
            {"C": "1\nchannels: 99"},
        )
    lines = config_summary(parse(MINIMAL), "with\nchannels: 5")  # printed as given, escaped
    assert lines[0] == "with\\nchannels: 5: OK"


# --- node: this host's name in the suite -------------------------------------------------


def test_node_defaults_to_the_host_name_up_to_its_first_dot(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "rs-app2.hospital.example")
    assert parse(MINIMAL).node == "rs-app2"
    assert parse(MINIMAL + "node: ward-b\n").node == "ward-b"
    assert parse(MINIMAL + "node: ${NODE}\n", {"NODE": "10.0.0.7"}).node == "10.0.0.7"


@pytest.mark.parametrize(
    ("host", "node"),
    [
        ("app1", "app1"),
        ("App_1.local", "App_1"),
        ("-weird host-.lan", "weird-host-"),
        ("ünïcode", "n-code"),
        ("x" * 200, "x" * 63),
        ("", "localhost"),
        ("...", "localhost"),
    ],
)
def test_a_host_name_becomes_a_valid_node_name(host: str, node: str):
    from daemon.domain.fields import default_node

    assert default_node(host) == node
    parse(MINIMAL + f"node: '{node}'\n")  # and the file would take it


@pytest.mark.parametrize(
    "value", ["a:b", "", "-leading", "two words", "x" * 64, "[1, 2]", "true", "'a/b'"]
)
def test_a_node_name_that_cannot_name_a_lease_owner_is_refused(value: str):
    (issue,) = errors(MINIMAL + f"node: {value}\n")
    assert issue.startswith("node: "), issue


def test_check_config_names_the_node():
    from daemon.operator.summaries import config_summary

    lines = config_summary(parse(MINIMAL + "node: ward-b\n"), "o.yaml")
    assert lines[:3] == ["o.yaml: OK", "node: ward-b", "database: sqlite:///var/outboxd.db"]
