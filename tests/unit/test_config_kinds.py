"""A file is validated by the settings of the kinds it names: a process imports
those kinds alone (checked in a fresh interpreter), the settings are the ones
the model of every kind gives, and a file with a mistake is told in the words
of the model of every kind."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.channels.registry import CHANNEL_KINDS
from daemon.config.errors import ConfigError
from daemon.config.loader import parse_config
from daemon.config.settings import Settings, every_kind, kinds_named, settings_model
from daemon.domain.kinds import Kinds, KindUnavailable
from daemon.jobs.registry import JOB_KINDS
from daemon.notify.registry import NOTIFY_KINDS
from daemon.sources.registry import SOURCE_KINDS
from tests.unit.test_config import ERRORS_BY_PATH

ROOT = Path(__file__).resolve().parents[2]
KIND_MODULES = {
    *(f"daemon.channels.{name}" for name in CHANNEL_KINDS),
    *(f"daemon.jobs.{name}" for name in JOB_KINDS),
    *(f"daemon.notify.{name}" for name in NOTIFY_KINDS),
    *(f"daemon.sources.{name}" for name in SOURCE_KINDS),
}
HOOK_SECRET = "whsec_ZGVtby1ub3RpZnktc2VjcmV0LWtleQ=="
FHIR = """
database: sqlite:///x.db
channels:
  ss: {kind: fhir, base_url: "https://fhir.example.org/r4"}
"""
MLLP_TYPO = """
database: sqlite:///x.db
channels:
  hie: {kind: mllp, host: 127.0.0.1, port: 2575, rte: 1}
"""
MLLP_ONLY = """
database: sqlite:///x.db
channels:
  hie: {kind: mllp, host: 127.0.0.1, port: 2575}
  lab: {kind: mllp, host: 127.0.0.1, port: 2576}
"""


def fresh(code: str) -> Any:
    """What ``code`` leaves in ``out`` (as JSON) when run in a new interpreter."""
    probe = f"{code}\nimport json\nprint(json.dumps(out))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def kinds_loaded_after(text: str) -> set[str]:
    code = (
        "import sys\n"
        "from daemon.config.loader import parse_config\n"
        f"parse_config({text!r}, environ={{'HOOK_SECRET': {HOOK_SECRET!r}}})\n"
        f"out = sorted(m for m in sys.modules if m in {sorted(KIND_MODULES)!r})"
    )
    return set(fresh(code))


def test_a_file_of_mllp_channels_loads_no_other_kind() -> None:
    assert kinds_loaded_after(MLLP_ONLY) == {"daemon.channels.mllp"}


def test_a_file_loads_the_kinds_its_channels_schedules_and_targets_name() -> None:
    text = MLLP_ONLY + textwrap.dedent(
        """
        schedules:
          ping: {every: 1m, job: http, options: {url: "http://127.0.0.1:9/"}}
        notify:
          ops: {kind: webhook, url: "http://127.0.0.1:9/hook", secret: "${HOOK_SECRET}"}
        """
    )
    assert kinds_loaded_after(text) == {
        "daemon.channels.mllp", "daemon.jobs.http", "daemon.notify.webhook",
        "daemon.channels.http",  # the http job's settings are the http channel's
    }  # fmt: skip


def test_a_file_with_a_kind_outboxd_lacks_is_checked_against_every_kind() -> None:
    code = (
        "from daemon.config.errors import ConfigError\n"
        "from daemon.config.loader import parse_config\n"
        "try:\n"
        "    parse_config('database: sqlite:///x.db\\nchannels:\\n  c: {kind: pigeon}\\n')\n"
        "except ConfigError as exc:\n"
        "    out = [str(i) for i in exc.issues]"
    )
    assert fresh(code) == [
        "channels.c.kind: unknown kind 'pigeon'; expected one of 'mllp', 'http', "
        "'bpjs_antrean', 'fhir'"
    ]


def test_each_mistake_is_told_as_the_model_of_every_kind_tells_it() -> None:
    """In a new interpreter (where a file is first validated by the model of the
    kinds it names) each file of test_config's mistakes gets the very errors it
    gets here, from the model of every kind, built before."""
    every_kind().model_rebuild()
    here = []
    for text, _ in ERRORS_BY_PATH:
        with pytest.raises(ConfigError) as caught:
            parse_config(textwrap.dedent(text), environ={})
        here.append([str(issue) for issue in caught.value.issues])
    code = (
        "import textwrap\n"
        "from daemon.config.errors import ConfigError\n"
        "from daemon.config.loader import parse_config\n"
        "out = []\n"
        f"for text in {[text for text, _ in ERRORS_BY_PATH]!r}:\n"
        "    try:\n"
        "        parse_config(textwrap.dedent(text), environ={})\n"
        "    except ConfigError as exc:\n"
        "        out.append([str(i) for i in exc.issues])"
    )
    assert fresh(code) == here


# the variables production.example.yaml needs
PRODUCTION = {
    "BPJS_CONS_ID": "10001", "BPJS_SECRET": "s3cr3t", "BPJS_USER_KEY": "user-key",
    "HIE_HOST": "hie.example.org", "KHANZA_DB_PASSWORD": "pw", "OUTBOXD_DB_PASSWORD": "pw",
    "OUTBOXD_OPS_TOKEN_SHA256": "ab" * 32,
}  # fmt: skip


@pytest.mark.parametrize("name", ["outboxd.yaml", "production.example.yaml"])
def test_the_model_of_the_kinds_named_gives_what_every_kind_gives(name: str) -> None:
    text = (ROOT / "config" / name).read_text()
    data = _interpolated(text, PRODUCTION)
    named = settings_model(
        [c["kind"] for c in data.get("channels", {}).values()],
        [s["kind"] for s in data.get("sources", {}).values()],
        [s["job"] for s in data.get("schedules", {}).values()],
        [n["kind"] for n in data.get("notify", {}).values()],
    )
    by_named, by_every = named.model_validate(data), every_kind().model_validate(data)
    assert list(named.model_fields) == list(every_kind().model_fields)
    assert by_named == by_every == parse_config(text, environ=PRODUCTION)
    assert type(by_named) is not type(by_every)
    assert by_named.channels and by_named.schedules  # a file with something to compare


def _interpolated(text: str, environ: dict[str, str]) -> Any:
    from daemon.config.document import parse_yaml
    from daemon.config.interpolation import interpolate

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return interpolate(node, environ)
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(parse_yaml(text, "<test>"))


def test_the_model_for_a_file_is_that_of_the_kinds_it_names_until_every_kind_is_built() -> None:
    code = (
        "import yaml\n"
        "from daemon.config.settings import every_kind, model_for\n"
        f"data = yaml.safe_load({MLLP_ONLY!r})\n"
        "first = model_for(data)\n"
        "union = str(first.model_fields['channels'].annotation)\n"
        "every_kind().model_rebuild()\n"
        "out = [union, first is every_kind(), model_for(data) is every_kind()]"
    )
    union, first_is_every, then_is_every = fresh(code)
    assert "MllpSettings" in union and "HttpSettings" not in union
    assert (first_is_every, then_is_every) == (False, True)


@pytest.mark.parametrize(
    "data",
    [
        {"channels": [{"kind": "mllp"}]},  # not a mapping
        {"channels": {"hie": {"host": "h"}}},  # an entry with no kind
        {"channels": {"hie": "mllp"}},  # an entry that is not a mapping
        {"schedules": {"s": {"job": "defrag"}}},  # a job outboxd lacks
        {"notify": {"n": {"kind": 3}}},  # a kind that is not a name
    ],
)
def test_a_file_that_names_no_kind_or_an_unknown_one_is_for_every_kind(data: Any) -> None:
    assert kinds_named(data) is None


def test_the_kinds_a_file_names_are_read_off_each_section() -> None:
    data = {
        "channels": {"a": {"kind": "http"}, "b": {"kind": "mllp"}, "c": {"kind": "http"}},
        "schedules": {"s": {"job": "purge"}},
        "notify": {},
        "webhooks": {"w": {"kind": "whatever"}},  # no kinds there
    }
    assert kinds_named(data) == [["http", "mllp", "http"], [], ["purge"], []]
    assert kinds_named({}) == [[], [], [], []]
    assert settings_model(["http", "mllp", "http"], [], ["purge"], []) is settings_model(
        ["mllp", "http"], [], ["purge", "purge"], []
    )  # one model per set of kinds


def test_kinds_load_at_their_first_lookup_and_say_a_loader_that_lies() -> None:
    calls: list[str] = []

    class Kind:
        def __init__(self, name: str) -> None:
            self.name = name

    def loader(name: str, gives: str) -> Any:
        def load() -> Kind:
            calls.append(name)
            return Kind(gives)

        return load

    def broken() -> Kind:
        raise KeyError("OUTBOXD_UNSET")  # as a module reading os.environ at import would

    kinds = Kinds(
        "test kind",
        {"a": loader("a", "a"), "b": loader("b", "b"), "c": loader("c", "x"), "d": broken},
    )
    assert ("a" in kinds, "z" in kinds, list(kinds), len(kinds)) == (
        True, False, ["a", "b", "c", "d"], 4
    )  # fmt: skip
    assert kinds.named(["c", "z", "a", "a"]) == ("a", "c")
    assert calls == []  # membership, order and names load nothing
    assert kinds["b"].name == "b" and kinds["b"] is kinds["b"]
    assert calls == ["b"]  # once
    assert kinds.get("z") is None
    with pytest.raises(
        KindUnavailable, match="the test kind 'c' cannot be loaded: its module declares 'x'"
    ):
        kinds["c"]
    with pytest.raises(KindUnavailable, match="the test kind 'd' cannot be loaded: KeyError"):
        kinds.get("d")  # not taken for "no such kind"


@pytest.mark.parametrize("registry", [CHANNEL_KINDS, SOURCE_KINDS, JOB_KINDS, NOTIFY_KINDS])
def test_every_registered_kind_loads_under_its_own_name(registry: Kinds[Any]) -> None:
    assert [kind.name for kind in registry.values()] == list(registry)


def test_a_kind_that_cannot_be_loaded_is_a_configuration_error_naming_it() -> None:
    """A broken install (here: the FHIR kind's module fails to import): a file naming
    that kind is refused saying so; a file of other kinds with a mistake is told its
    mistake; a good file of other kinds is read."""
    code = (
        "from daemon.channels import registry\n"
        "from daemon.config.errors import ConfigError\n"
        "from daemon.config.loader import parse_config\n"
        "def broken():\n"
        "    raise ImportError('no module named fhir')\n"
        "registry.CHANNEL_KINDS._loaders['fhir'] = broken\n"
        "out = []\n"
        f"for text in {[FHIR, MLLP_TYPO, MLLP_ONLY]!r}:\n"
        "    try:\n"
        "        out.append(sorted(parse_config(text, environ={}).channels))\n"
        "    except ConfigError as exc:\n"
        "        out.append([str(i) for i in exc.issues])"
    )
    assert fresh(code) == [
        [
            "the channel kind 'fhir' cannot be loaded: ImportError: no module named fhir "
            "(reinstall outboxd)"
        ],
        ["channels.hie.rte: unknown key (did you mean 'rate'?)"],
        ["hie", "lab"],
    ]


def test_settings_pickle_as_the_kinds_their_model_knows_and_their_values() -> None:
    settings = settings_model(["mllp"], [], [], []).model_validate(_interpolated(MLLP_ONLY, {}))
    again = pickle.loads(pickle.dumps(settings))
    assert again == settings and type(again) is type(settings)
    assert again.model_fields_set == settings.model_fields_set


def test_settings_itself_validates_by_the_model_of_the_kinds_a_file_names() -> None:
    data = _interpolated(MLLP_ONLY, {})
    assert Settings.model_validate(data) == parse_config(MLLP_ONLY, environ={})
    with pytest.raises(TypeError, match="through the model of a file's kinds"):
        Settings(**data)


def _named_kinds(text: str) -> Any:
    """The file's data and the kinds it names, or None (a kind outboxd lacks, or
    none: such a file is validated by the model of every kind alone)."""
    try:
        data = _interpolated(textwrap.dedent(text), {})
    except Exception:  # a variable unset, or YAML that is not a mapping
        return None
    named = kinds_named(data) if isinstance(data, dict) else None
    return None if named is None else (data, named)


NARROWED = [(text, expected) for text, expected in ERRORS_BY_PATH if _named_kinds(text)]


@pytest.mark.parametrize(("text", "expected"), NARROWED)
def test_the_model_of_a_files_kinds_refuses_what_every_kind_refuses(
    text: str, expected: str
) -> None:
    """The same verdict from both models for each file of test_config's mistakes (the
    errors a file is told come from the model of every kind; this is the narrower
    model's own verdict)."""
    data, named = _named_kinds(text)
    verdicts = []
    for model in (settings_model(*named), every_kind()):
        try:
            model.model_validate(data)
            verdicts.append("accepted")
        except ValidationError:
            verdicts.append("refused")
    assert verdicts[0] == verdicts[1], expected


def test_most_mistakes_are_checked_by_the_narrower_model_too() -> None:
    assert len(NARROWED) >= len(ERRORS_BY_PATH) * 3 // 4
