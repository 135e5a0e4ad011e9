"""``kind: bpjs_antrean``: a hospital's queue tasks to BPJS Antrean RS
(``daemon.channels.bpjs_antrean.channel``; the visit flow is ``daemon.bpjs.flow``)."""

from __future__ import annotations

from daemon.bpjs import flow
from daemon.channels.base import Channel
from daemon.channels.bpjs_antrean.settings import BpjsAntreanSettings
from daemon.channels.kind import ChannelKind, InvalidPayload
from daemon.domain.fields import redact_url


def _build(settings: BpjsAntreanSettings) -> Channel:
    from daemon.channels.bpjs_antrean.channel import BpjsAntreanChannel

    return BpjsAntreanChannel(settings)


def _check(_settings: BpjsAntreanSettings, payload: bytes, kind: str) -> bytes:
    """The call's body checked as BPJS would (``kind`` names the call); stored as given."""
    try:
        flow.check_payload(kind, payload)
    except ValueError as exc:
        raise InvalidPayload(f"not a valid BPJS {kind or 'call'}: {exc}") from None
    return payload


def _describe(settings: BpjsAntreanSettings) -> str:
    return redact_url(settings.base_url)


KIND = ChannelKind(
    name="bpjs_antrean",
    settings=BpjsAntreanSettings,
    build=_build,
    check_payload=_check,
    describe=_describe,
    default_message_kind=None,
    message_kind_hint=f"a BPJS message needs --kind: {', '.join(flow.MESSAGE_KINDS)}",
    progress=flow.progress,
)
