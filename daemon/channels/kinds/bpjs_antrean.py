"""``kind: bpjs_antrean``: a hospital's queue tasks to BPJS Antrean RS
(``daemon.channels.bpjs``; the visit flow is ``daemon.bpjs.flow``)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from daemon.bpjs import flow
from daemon.channels.base import Channel
from daemon.channels.kind import ChannelKind, ChannelSettings, InvalidPayload
from daemon.fields import HttpUrl, Line, PositiveDuration, redact_url


class BpjsAntreanSettings(ChannelSettings):
    kind: Literal["bpjs_antrean"]
    base_url: HttpUrl
    cons_id: Line
    secret: SecretStr
    user_key: SecretStr
    timeout: PositiveDuration = 30.0
    # Seconds to wait for the TCP (and TLS) connection before counting a transport failure.
    connect_timeout: PositiveDuration = 10.0
    # How long to wait before retrying a task BPJS refused because its predecessor task
    # (or the booking's antrean/add) has not been recorded yet (201 "TaskId=N tidak
    # valid / TaskId sebelumnya belum terkirim", "TaskId=N belum ada"). Such waits do
    # not count as attempts; retry.max_age bounds them.
    predecessor_wait: PositiveDuration = 60.0
    # The Content-Type of every call; the body is the same JSON either way. "json" sends
    # application/json (the reference); "form" sends application/x-www-form-urlencoded,
    # as some clients do (unconfirmed which one BPJS prefers, so it is a setting).
    content_type: Literal["json", "form"] = "json"


def _build(settings: BpjsAntreanSettings) -> Channel:
    from daemon.channels.bpjs import BpjsAntreanChannel

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
