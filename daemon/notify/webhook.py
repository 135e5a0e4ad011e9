"""``kind: webhook``: a notification as JSON to a URL, signed the Standard
Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``,
``daemon.webhooks.signing``), so the receiver can check it came from here."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from daemon.channels.http.settings import HttpHeaders
from daemon.domain.fields import HttpUrl, PositiveDuration, redact_url
from daemon.notify.kind import NotifyFailed, NotifyKind, NotifySettings
from daemon.webhooks.signing import secret_key, signed_headers


class WebhookNotifySettings(NotifySettings):
    kind: Literal["webhook"]
    url: HttpUrl
    secret: SecretStr  # whsec_…
    headers: HttpHeaders = Field(default_factory=dict)
    timeout: PositiveDuration = 30.0

    @field_validator("secret")
    @classmethod
    def _a_secret(cls, secret: SecretStr) -> SecretStr:
        secret_key(secret.get_secret_value())
        return secret


class WebhookNotifier:
    def __init__(self, settings: WebhookNotifySettings) -> None:
        self.settings = settings
        self.key = secret_key(settings.secret.get_secret_value())

    async def send(self, subject: str, text: str, event: dict[str, Any]) -> str:
        import aiohttp  # the notifier's own dependency, loaded when it sends

        s = self.settings
        body = json.dumps({"subject": subject, "text": text, **event}, sort_keys=True).encode()
        message_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            **s.headers,
            "Content-Type": "application/json",
            **signed_headers([self.key], message_id, int(time.time()), body),
        }
        where = redact_url(s.url.split("?")[0])
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=s.timeout), trust_env=False
                ) as session,
                session.post(s.url, data=body, headers=headers, allow_redirects=False) as answer,
            ):
                said = (await answer.content.read(2000)).decode("utf-8", "replace")
                status = answer.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NotifyFailed(f"{where}: {type(exc).__name__}: {exc}") from None
        if not 200 <= status <= 299:
            raise NotifyFailed(f"{where} answered HTTP {status}: {' '.join(said.split())[:120]}")
        return f"HTTP {status}"


def describe(settings: WebhookNotifySettings) -> str:
    return f"signed webhook to {redact_url(settings.url.split('?')[0])}"


KIND = NotifyKind("webhook", WebhookNotifySettings, WebhookNotifier, describe)
