"""``kind: mllp``: HL7 v2 over MLLP (``daemon.channels.mllp.channel``)."""

from __future__ import annotations

from daemon.channels.base import Channel
from daemon.channels.kind import ChannelKind, InvalidPayload
from daemon.channels.mllp.settings import MllpSettings
from daemon.hl7 import InvalidHL7, identifiers, validate


def _build(settings: MllpSettings) -> Channel:
    from daemon.channels.mllp.channel import MllpChannel

    return MllpChannel(settings)


def _check(settings: MllpSettings, payload: bytes, _kind: str) -> bytes:
    """HL7 v2 checked and stored in normal form (segments ended by ``\\r``)."""
    try:
        return validate(payload, settings.encoding).payload
    except InvalidHL7 as exc:
        raise InvalidPayload(f"not a valid HL7 v2 message: {exc}") from None


def _identifiers(settings: MllpSettings, payload: bytes) -> list[tuple[str, str]]:
    """MSH-10, MSH-9, PID-3 and PV1-19 of a stored message."""
    return identifiers(payload.decode(settings.encoding, "replace"))


def _describe(settings: MllpSettings) -> str:
    return f"{settings.host}:{settings.port}" + (" (TLS)" if settings.tls else "")


KIND = ChannelKind(
    name="mllp",
    settings=MllpSettings,
    build=_build,
    check_payload=_check,
    describe=_describe,
    default_message_kind="hl7",
    identifiers=_identifiers,
)
