"""The settings of an ``http`` channel: URL, method, headers and auth."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from daemon.channels.kind import ChannelSettings
from daemon.channels.oauth.settings import OAuth2Settings
from daemon.domain.fields import HttpUrl, Model, PositiveDuration


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or not name.strip() or ":" in name:
            raise ValueError(f"header {name!r} has a character HTTP headers cannot carry")
    return headers


HttpHeaders = Annotated[dict[str, str], AfterValidator(_check_headers)]


class BearerAuthSettings(Model):
    type: Literal["bearer"]
    token: SecretStr


class BasicAuthSettings(Model):
    type: Literal["basic"]
    username: Annotated[str, Field(pattern=r"^[^:\r\n]*$")]
    password: SecretStr


class HmacSettings(Model):
    secret: SecretStr
    header: str = "X-Outboxd-Signature"  # value: sha256=<hex of HMAC-SHA256(body)>


# How a request authenticates: a fixed bearer token, basic auth, or OAuth2 tokens.
HttpAuth = Annotated[
    BearerAuthSettings | BasicAuthSettings | OAuth2Settings, Field(discriminator="type")
]


class HttpSettings(ChannelSettings):
    kind: Literal["http"]
    url: HttpUrl
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: HttpHeaders = Field(default_factory=dict)
    auth: HttpAuth | None = None
    hmac: HmacSettings | None = None
    timeout: PositiveDuration = 30.0
    connect_timeout: PositiveDuration = 10.0

    @property
    def content_type(self) -> str:
        return next(
            (v for k, v in self.headers.items() if k.lower() == "content-type"),
            "application/json",
        )
