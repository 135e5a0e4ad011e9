"""The channel kinds by name: the one mapping from ``kind:`` in the YAML file to a
kind's declaration (``kind.py``); a kind not in it cannot be configured or built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.channels.base import Channel
from daemon.channels.kind import ChannelKind, ChannelSettings, InvalidPayload
from daemon.domain.kinds import Kinds, tagged_union


def _mllp() -> ChannelKind[Any]:
    from daemon.channels import mllp

    return mllp.KIND


def _http() -> ChannelKind[Any]:
    from daemon.channels import http

    return http.KIND


def _bpjs_antrean() -> ChannelKind[Any]:
    from daemon.channels import bpjs_antrean

    return bpjs_antrean.KIND


def _fhir() -> ChannelKind[Any]:
    from daemon.channels import fhir

    return fhir.KIND


# a kind's module is imported at the first lookup of its name
CHANNEL_KINDS: Kinds[ChannelKind[Any]] = Kinds(
    "channel kind", {"mllp": _mllp, "http": _http, "bpjs_antrean": _bpjs_antrean, "fhir": _fhir}
)


def channel_settings(names: Sequence[str]) -> Any:
    """The type a channel's settings are validated as: the settings of the kinds
    named (registered ones, in the registry's order), told apart by ``kind``."""
    kinds = CHANNEL_KINDS.named(names)
    return tagged_union([CHANNEL_KINDS[n].settings for n in kinds], "kind", ChannelSettings)


def kind_of(settings: ChannelSettings) -> ChannelKind[Any]:
    kind = CHANNEL_KINDS.get(settings.kind)
    if kind is None or not isinstance(settings, kind.settings):
        raise ValueError(f"{settings.kind!r} is not a registered channel kind")
    return kind


def build_channel(settings: ChannelSettings) -> Channel:
    return kind_of(settings).build(settings)


def prepare_payload(settings: ChannelSettings, payload: bytes, kind: str = "") -> bytes:
    """Check a payload for the channel at enqueue and return what to store (HL7 in
    normal form, JSON checked, a BPJS call's body checked); ``InvalidPayload``
    says why not."""
    return kind_of(settings).check_payload(settings, payload, kind)


def search_fields(settings: ChannelSettings, payload: bytes) -> tuple[tuple[str, str], ...]:
    """The fields a payload stored on the channel is found by (``identifiers``
    of its kind): none for a kind that declares none."""
    read = kind_of(settings).identifiers
    return () if read is None else tuple(read(settings, payload))


def refers_without_prerequisite(settings: ChannelSettings, payload: bytes, after: bool) -> bool:
    """Whether a payload names its prerequisite's answer (``{{after.id}}``) on a
    channel that fills such references, while the message has no prerequisite."""
    if after or not kind_of(settings).references:
        return False
    from daemon.channels.references import names_prerequisite

    return names_prerequisite(payload)


def message_kind(settings: ChannelSettings, given: str | None) -> str:
    """The message kind to store: the one given, or the channel kind's default;
    ``InvalidPayload`` when the kind needs one named."""
    if given:
        return given
    kind = kind_of(settings)
    if kind.default_message_kind is None:
        raise InvalidPayload(kind.message_kind_hint or f"a {kind.name} message needs a kind")
    return kind.default_message_kind


__all__ = [
    "CHANNEL_KINDS",
    "ChannelSettings",
    "InvalidPayload",
    "build_channel",
    "channel_settings",
    "kind_of",
    "message_kind",
    "prepare_payload",
    "refers_without_prerequisite",
    "search_fields",
]
