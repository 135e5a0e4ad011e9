"""``kind: http``: JSON (or any body) to a webhook (``daemon.channels.http``)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from daemon.channels.base import Channel
from daemon.channels.kind import ChannelKind, ChannelSettings, InvalidPayload
from daemon.fields import HttpUrl, Model, PositiveDuration, redact_url


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


class HttpSettings(ChannelSettings):
    kind: Literal["http"]
    url: HttpUrl
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: HttpHeaders = Field(default_factory=dict)
    auth: Annotated[BearerAuthSettings | BasicAuthSettings, Field(discriminator="type")] | None = (
        None
    )
    hmac: HmacSettings | None = None
    timeout: PositiveDuration = 30.0
    connect_timeout: PositiveDuration = 10.0

    @property
    def content_type(self) -> str:
        return next(
            (v for k, v in self.headers.items() if k.lower() == "content-type"),
            "application/json",
        )


def _build(settings: HttpSettings) -> Channel:
    from daemon.channels.http import HttpChannel

    return HttpChannel(settings)


def _check(settings: HttpSettings, payload: bytes, _kind: str) -> bytes:
    """JSON checked when the channel sends JSON; any other body as given."""
    if "json" in settings.content_type.lower():
        try:
            json.loads(payload)
        except ValueError as exc:
            raise InvalidPayload(f"not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidPayload("not valid JSON: nested too deeply") from None
    return payload


def _describe(settings: HttpSettings) -> str:
    """The method and URL, without a password or the query (it may carry a token)."""
    url, query = settings.url.partition("?")[::2]
    return f"{settings.method} {redact_url(url)}" + ("?…" if query else "")


KIND = ChannelKind(
    name="http",
    settings=HttpSettings,
    build=_build,
    check_payload=_check,
    describe=_describe,
    default_message_kind="json",
)
