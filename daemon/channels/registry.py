"""The channel kinds by name: the one mapping from ``kind:`` in the YAML file to a
kind's declaration (``kind.py``); a kind not in it cannot be configured or built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from daemon.channels import bpjs_antrean, fhir, http, mllp
from daemon.channels.base import Channel
from daemon.channels.kind import ChannelKind, ChannelSettings, InvalidPayload

CHANNEL_KINDS: Mapping[str, ChannelKind[Any]] = {
    kind.name: kind for kind in (mllp.KIND, http.KIND, bpjs_antrean.KIND, fhir.KIND)
}

# The settings of any registered kind, told apart by ``kind``.
if TYPE_CHECKING:  # a type checker sees the base; pydantic, the union of the kinds
    AnyChannelSettings = ChannelSettings
else:
    AnyChannelSettings = Annotated[
        Union[tuple(kind.settings for kind in CHANNEL_KINDS.values())],  # noqa: UP007
        Field(discriminator="kind"),
    ]


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
    "AnyChannelSettings",
    "ChannelSettings",
    "InvalidPayload",
    "build_channel",
    "kind_of",
    "message_kind",
    "prepare_payload",
    "refers_without_prerequisite",
    "search_fields",
]
