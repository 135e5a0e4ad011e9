"""The settings of a ``fhir`` channel: the server's base URL and how to authenticate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from daemon.channels.http.settings import HttpAuth, HttpHeaders
from daemon.channels.kind import ChannelSettings
from daemon.domain.fields import HttpUrl, PositiveDuration


class FhirSettings(ChannelSettings):
    kind: Literal["fhir"]
    # The FHIR base: [base]/Patient, [base]/Encounter/123 (SATUSEHAT: …/fhir-r4/v1).
    base_url: HttpUrl
    auth: HttpAuth | None = None  # SATUSEHAT: {type: oauth2, client_auth: body, …}
    headers: HttpHeaders = Field(default_factory=dict)  # sent with every request
    timeout: PositiveDuration = 30.0  # one request, the answer included
    connect_timeout: PositiveDuration = 10.0
