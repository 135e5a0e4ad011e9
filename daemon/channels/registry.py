"""Channel kinds by name: the one place that maps settings to protocol code."""

from __future__ import annotations

import json
from typing import Protocol

from daemon.channels.base import Sender
from daemon.settings import BpjsAntreanChannel, HttpChannel, MllpChannel


class Channel(Protocol):
    def sender(self) -> Sender: ...

    async def close(self) -> None: ...


ChannelSettings = MllpChannel | HttpChannel | BpjsAntreanChannel


class InvalidPayload(ValueError):
    """A payload the channel could never deliver; the text says why and where."""


def prepare_payload(settings: ChannelSettings, payload: bytes, kind: str = "") -> bytes:
    """Check a payload for the channel at enqueue time and return what to store:
    HL7 in normal form (segments ended by \\r) for MLLP, JSON checked for HTTP
    when its content type is JSON, the call's body checked for BPJS (``kind``
    names the call). A bad payload raises ``InvalidPayload``."""
    if isinstance(settings, BpjsAntreanChannel):
        from daemon.channels.bpjs import check_payload

        try:
            check_payload(kind, payload)
        except ValueError as exc:
            raise InvalidPayload(f"not a valid BPJS {kind or 'call'}: {exc}") from None
        return payload
    if isinstance(settings, MllpChannel):
        from daemon.hl7 import InvalidHL7, validate

        try:
            return validate(payload, settings.encoding).payload
        except InvalidHL7 as exc:
            raise InvalidPayload(f"not a valid HL7 v2 message: {exc}") from None
    if isinstance(settings, HttpChannel):
        content_type = next(
            (v for k, v in settings.headers.items() if k.lower() == "content-type"),
            "application/json",
        )
        if "json" in content_type.lower():
            try:
                json.loads(payload)
            except ValueError as exc:
                raise InvalidPayload(f"not valid JSON: {exc}") from None
    return payload


def build_channel(settings: ChannelSettings) -> Channel:
    if isinstance(settings, MllpChannel):
        from daemon.channels.mllp import MllpChannel as Mllp

        return Mllp(settings)
    if isinstance(settings, HttpChannel):
        from daemon.channels.http import HttpChannel as Http

        return Http(settings)
    from daemon.channels.bpjs import BpjsAntreanChannel as Bpjs

    return Bpjs(settings)
