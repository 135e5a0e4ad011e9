"""``kind: http``: JSON (or any body) to a webhook (``daemon.channels.http.channel``)."""

from __future__ import annotations

from daemon.channels.base import Channel
from daemon.channels.http.settings import HttpSettings
from daemon.channels.kind import ChannelKind, InvalidPayload
from daemon.channels.oauth.settings import OAuth2Settings
from daemon.domain import jsontext
from daemon.domain.fields import redact_url


def _build(settings: HttpSettings) -> Channel:
    from daemon.channels.http.channel import HttpChannel

    return HttpChannel(settings)


def _check(settings: HttpSettings, payload: bytes, _kind: str) -> bytes:
    """JSON checked when the channel sends JSON; any other body as given."""
    if "json" in settings.content_type.lower():
        try:
            jsontext.loads(payload)
        except jsontext.NotJson as exc:
            raise InvalidPayload(f"not valid JSON: {exc}") from None
    return payload


def _describe(settings: HttpSettings) -> str:
    """The method and URL, without a password or the query (it may carry a token)."""
    url, query = settings.url.partition("?")[::2]
    oauth = " (OAuth2)" if isinstance(settings.auth, OAuth2Settings) else ""
    return f"{settings.method} {redact_url(url)}" + ("?…" if query else "") + oauth


KIND = ChannelKind(
    name="http",
    settings=HttpSettings,
    build=_build,
    check_payload=_check,
    describe=_describe,
    default_message_kind="json",
    references=True,
)
