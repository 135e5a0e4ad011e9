"""Every registered channel kind keeps the kind contract: its settings parse from
YAML-shaped data, it builds, a bad payload is refused with a reason, a good one
is stored, its default message kind and summary line work, and it closes."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.channels.base import Channel, Envelope, Outcome
from daemon.channels.kind import ChannelSettings, InvalidPayload
from daemon.channels.registry import (
    CHANNEL_KINDS,
    build_channel,
    kind_of,
    message_kind,
    prepare_payload,
)
from daemon.config.errors import ConfigError
from daemon.config.loader import parse_config

HL7 = b"MSH|^~\\&|A|B|C|D|20261123||ADT^A04|MSG1|P|2.5.1\rPID|1||42\r"
ADD = (
    b'{"kodebooking": "KB1", "jenispasien": "JKN", "nomorkartu": "0001234567890",'
    b' "nik": "3171000000000001", "nohp": "081200000000", "kodepoli": "INT",'
    b' "namapoli": "Dalam", "pasienbaru": 0, "norm": "1", "tanggalperiksa": "2026-11-23",'
    b' "kodedokter": 1, "namadokter": "dr", "jampraktek": "08:00-12:00",'
    b' "jeniskunjungan": 1, "nomorreferensi": "R1", "nomorantrean": "A-1",'
    b' "angkaantrean": 1, "estimasidilayani": 1795917600000, "sisakuotajkn": 1,'
    b' "kuotajkn": 2, "sisakuotanonjkn": 1, "kuotanonjkn": 2, "keterangan": ""}'
)

# Per kind: settings as in YAML, (message kind, a good payload), a bad payload and a
# word of the reason it is refused. A kind added to the registry without a row here
# fails ``test_every_kind_has_a_row``.
SAMPLES: dict[str, dict[str, Any]] = {
    "mllp": {
        "settings": {"kind": "mllp", "host": "127.0.0.1", "port": 2575},
        "good": (None, HL7),
        "bad": (b"PID|1||42\r", "HL7"),
        "describe": "127.0.0.1:2575",
    },
    "http": {
        "settings": {"kind": "http", "url": "https://hooks.example/in?token=s3cret"},
        "good": (None, b'{"a": 1}'),
        "bad": (b"{not json", "JSON"),
        "describe": "POST https://hooks.example/in?…",  # a query may hold a token
    },
    "bpjs_antrean": {
        "settings": {
            "kind": "bpjs_antrean",
            "base_url": "https://apijkn.example/antreanrs",
            "cons_id": "1",
            "secret": "s3cret",
            "user_key": "k3y",
        },
        "good": ("bpjs.add", ADD),
        "bad": (b'{"kodebooking": "KB1", "taskid": 8, "waktu": 1795917600000}', "taskid"),
        "describe": "https://apijkn.example/antreanrs",
        "bad_kind": "bpjs.updatewaktu",
    },
    "fhir": {
        "settings": {
            "kind": "fhir",
            "base_url": "https://fhir.example/fhir-r4/v1?key=s3cret",
            "auth": {"type": "bearer", "token": "t0ken"},
        },
        "good": (
            "create",
            b'{"resourceType": "Patient", "name": [{"text": "Budi"}], "gender": "male"}',
        ),
        "bad": (b'{"resourceType": "Patient", "gender": 7}', r"Patient\.gender"),
        "describe": "FHIR https://fhir.example/fhir-r4/v1",
    },
}


def settings_of(name: str) -> ChannelSettings:
    text = f"database: sqlite:///x.db\nchannels:\n  c: {SAMPLES[name]['settings']!r}\n"
    return parse_config(text.replace("'", '"')).channels["c"]


def test_every_kind_has_a_row():
    assert set(CHANNEL_KINDS) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(CHANNEL_KINDS))
async def test_a_kind_parses_builds_checks_describes_and_closes(name: str):
    sample = SAMPLES[name]
    settings = settings_of(name)
    kind = kind_of(settings)
    assert kind.name == name and isinstance(settings, kind.settings)
    assert type(settings).__name__.endswith("Settings")
    # the message kind: the default, or a clear refusal to guess
    given, good = sample["good"]
    if kind.default_message_kind is None:
        with pytest.raises(InvalidPayload, match="needs --kind"):
            message_kind(settings, None)
    else:
        assert message_kind(settings, None) == kind.default_message_kind
    chosen = message_kind(settings, given)
    assert prepare_payload(settings, good, chosen)
    bad, reason = sample["bad"]
    with pytest.raises(InvalidPayload, match=reason):
        prepare_payload(settings, bad, sample.get("bad_kind", chosen))
    with pytest.raises(InvalidPayload):
        prepare_payload(settings, b"\xff\xfe" * 3, chosen)
    assert kind.describe(settings) == sample["describe"]
    channel: Channel = build_channel(settings)
    sender = channel.sender()
    await sender.close()
    await channel.close()
    if name != "mllp":  # after close an HTTP-based channel answers "retry", sending nothing
        outcome = await sender.send(Envelope(1, "k", chosen, good, 1))
        assert isinstance(outcome, Outcome) and outcome.verdict.value == "retry"


def test_a_kind_not_in_the_registry_cannot_be_configured():
    with pytest.raises(ConfigError) as caught:
        parse_config("database: sqlite:///x.db\nchannels: {c: {kind: smtp, host: h}}\n")
    assert "channels.c.kind: unknown kind 'smtp'" in str(caught.value)


def test_a_kind_not_in_the_registry_cannot_be_built():
    class Stray(ChannelSettings):
        kind: str = "stray"

    with pytest.raises(ValueError, match="not a registered channel kind"):
        build_channel(Stray())
