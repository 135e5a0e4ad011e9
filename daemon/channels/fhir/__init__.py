"""``kind: fhir``: HL7 FHIR R4 resources to a FHIR server, SATUSEHAT's
included (``daemon.channels.fhir.channel``; the wire rules in ``rules``)."""

from __future__ import annotations

from daemon.channels.base import Channel
from daemon.channels.fhir.settings import FhirSettings
from daemon.channels.kind import ChannelKind
from daemon.channels.oauth.settings import OAuth2Settings
from daemon.domain.fields import redact_url

KINDS_HINT = (
    "a fhir message needs --kind, its operation: create, update, conditional-create or search"
)


def _build(settings: FhirSettings) -> Channel:
    from daemon.channels.fhir.channel import FhirChannel

    return FhirChannel(settings)


def _check(_settings: FhirSettings, payload: bytes, kind: str) -> bytes:
    """A resource or a Bundle valid against FHIR R4 (or a search's query), with the
    path of the bad element when it is not (``daemon.channels.fhir.resources``)."""
    from daemon.channels.fhir.resources import check

    return check(payload, kind)


def _describe(settings: FhirSettings) -> str:
    """The base URL, and where tokens come from (no query: it may hold a key)."""
    base = redact_url(settings.base_url.split("?")[0])
    if isinstance(settings.auth, OAuth2Settings):
        return f"FHIR {base} (OAuth2 from {redact_url(settings.auth.token_url.split('?')[0])})"
    return f"FHIR {base}"


KIND = ChannelKind(
    name="fhir",
    settings=FhirSettings,
    build=_build,
    check_payload=_check,
    describe=_describe,
    default_message_kind=None,
    message_kind_hint=KINDS_HINT,
    references=True,
)
