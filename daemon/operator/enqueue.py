"""A message as a caller hands it in (the CLI's ``enqueue``, the API's ``POST
/api/v1/messages``): its channel looked up in the settings, its kind chosen, its
payload checked by the channel's kind, before anything is stored. What is wrong
is ``daemon.domain.errors.Refused``: ``usage`` for an unknown channel or kind, ``data``
for a payload the channel cannot send; ``field`` names it."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.channels.registry import (
    InvalidPayload,
    message_kind,
    prepare_payload,
    refers_without_prerequisite,
    search_fields,
)
from daemon.config.settings import Settings
from daemon.domain.errors import Refused
from daemon.domain.messages import NewMessage


@dataclass(frozen=True)
class Handed:
    channel: str
    key: str
    payload: bytes
    kind: str | None = None
    after_key: str | None = None
    group_key: str | None = None


def kind_of(settings: Settings, channel_name: str, kind: str | None) -> str:
    """The message kind on that channel (its default when none is given); an
    unknown channel or a kind the channel does not take is refused."""
    channel = settings.channels.get(channel_name)
    if channel is None:
        known = ", ".join(sorted(settings.channels)) or "none configured"
        raise Refused(f"unknown channel {channel_name!r} (channels: {known})", "usage", "channel")
    try:
        return message_kind(channel, kind)
    except InvalidPayload as exc:
        raise Refused(str(exc), "usage", "kind") from None


def new_message(settings: Settings, handed: Handed) -> NewMessage:
    kind = kind_of(settings, handed.channel, handed.kind)
    if not handed.payload.strip():
        raise Refused("the payload is empty", "data", "payload")
    try:
        payload = prepare_payload(settings.channels[handed.channel], handed.payload, kind)
    except InvalidPayload as exc:
        raise Refused(str(exc), "data", "payload") from None
    if refers_without_prerequisite(
        settings.channels[handed.channel], payload, bool(handed.after_key)
    ):
        raise Refused(
            "the payload names its prerequisite's answer ({{after…}}) but the message has "
            "no prerequisite: give after",
            "data",
            "payload",
        )
    return NewMessage(
        channel=handed.channel,
        key=handed.key,
        payload=payload,
        kind=kind,
        after_key=handed.after_key,
        group_key=handed.group_key,
        fields=search_fields(settings.channels[handed.channel], payload),
    )
