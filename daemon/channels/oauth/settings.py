"""``auth: {type: oauth2, …}``: where a client gets its access tokens, and with what."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from daemon.domain.fields import EnvSecret, HttpUrl, Line, Model, PositiveDuration


class OAuth2Settings(Model):
    """The client credentials grant: ``client_id`` and ``client_secret`` are given as
    ``${VAR}`` (the loader refuses them written out), never printed or logged."""

    type: Literal["oauth2"]
    token_url: HttpUrl  # as given, query included (SATUSEHAT: ?grant_type=client_credentials)
    client_id: EnvSecret
    client_secret: EnvSecret
    scope: Annotated[Line, Field(max_length=2000)] | None = None  # space-separated
    # How the client authenticates (RFC 6749 §2.3.1): "basic" (HTTP Basic, which
    # every server must take) or "body" (client_id and client_secret in the form).
    client_auth: Literal["basic", "body"] = "basic"
    # A token is replaced this long before it expires (or at half its life, if shorter).
    refresh_before: PositiveDuration = 60.0
    # How long a token whose answer gave no expires_in is used before a fresh one.
    assumed_lifetime: PositiveDuration = 3600.0
    timeout: PositiveDuration = 30.0  # one token request, connect included
