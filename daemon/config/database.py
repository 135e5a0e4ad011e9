"""Where outboxd's own database is: ``database:`` of the YAML file."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator

from daemon.domain.fields import Model, PositiveDuration, masked_url

STORE_SCHEMES = ("sqlite", "postgres", "postgresql")


class DatabaseSettings(Model):
    """``database:`` in the YAML file (a URL alone is short for ``{url: …}``)."""

    url: SecretStr
    busy_timeout: PositiveDuration = 10.0
    connect_timeout: PositiveDuration = 10.0

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: SecretStr) -> SecretStr:
        text = url.get_secret_value()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises for a port that is not one
        except ValueError:  # its text quotes the URL: the password too
            raise ValueError(f"not a database URL: {masked_url(text)} (its host or port)") from None
        if parts.scheme not in STORE_SCHEMES:
            raise ValueError(
                f"unsupported database scheme {parts.scheme or '(none)'!r}: "
                "use sqlite:///PATH or postgresql://USER@HOST/DB"
            )
        if any(c in text for c in "\r\n\0"):
            raise ValueError("the database URL holds a line break or a NUL")
        return url
