"""A message as a caller hands it in (the CLI's ``enqueue``, the API's ``POST
/api/v1/messages``): its channel looked up in the settings, its kind chosen, its
payload checked by the channel's kind, before anything is stored."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.channels.registry import InvalidPayload, message_kind, prepare_payload
from daemon.settings import Settings
from daemon.store.types import NewMessage


class Refused(ValueError):
    """What is wrong with a message handed in: ``field`` names what is at fault;
    ``usage`` is True for a mistake in how it was asked (an unknown channel or
    kind), False for a payload the channel cannot send."""

    def __init__(self, text: str, field: str, usage: bool) -> None:
        super().__init__(text)
        self.field = field
        self.usage = usage


@dataclass(frozen=True)
class Handed:
    channel: str
    key: str
    payload: bytes
    kind: str | None = None
    after_key: str | None = None
    group_key: str | None = None


def new_message(settings: Settings, handed: Handed) -> NewMessage:
    channel = settings.channels.get(handed.channel)
    if channel is None:
        known = ", ".join(sorted(settings.channels)) or "none configured"
        raise Refused(f"unknown channel {handed.channel!r} (channels: {known})", "channel", True)
    try:
        kind = message_kind(channel, handed.kind)
    except InvalidPayload as exc:
        raise Refused(str(exc), "kind", True) from None
    if not handed.payload.strip():
        raise Refused("the payload is empty", "payload", False)
    try:
        payload = prepare_payload(channel, handed.payload, kind)
    except InvalidPayload as exc:
        raise Refused(str(exc), "payload", False) from None
    return NewMessage(
        channel=handed.channel,
        key=handed.key,
        payload=payload,
        kind=kind,
        after_key=handed.after_key,
        group_key=handed.group_key,
    )
