"""``kind: smtp``: a notification as an email (aiosmtplib): plain SMTP,
STARTTLS or TLS, with a login when one is given."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr

from daemon.domain.fields import Host, Line, Model, Port, PositiveDuration
from daemon.notify.kind import NotifyFailed, NotifyKind, NotifySettings

Address = Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$", max_length=254)]


class SmtpSettings(NotifySettings):
    kind: Literal["smtp"]
    host: Host
    port: Port = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: Line | None = None
    password: SecretStr | None = None
    sender: Address = Field(alias="from")
    to: Annotated[list[Address], Field(min_length=1)]
    timeout: PositiveDuration = 30.0

    model_config = Model.model_config | {"populate_by_name": True}


class SmtpNotifier:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, subject: str, text: str, event: dict[str, Any]) -> str:
        import aiosmtplib

        s = self.settings
        message = EmailMessage()
        message["From"] = s.sender
        message["To"] = ", ".join(s.to)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=s.sender.split("@", 1)[1])
        message.set_content(text)
        try:
            errors, answer = await aiosmtplib.send(
                message,
                hostname=s.host,
                port=s.port,
                use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
                username=s.username,
                password=s.password.get_secret_value() if s.password else None,
                timeout=s.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise NotifyFailed(f"{s.host}:{s.port}: {type(exc).__name__}: {exc}") from None
        if errors:
            refused = ", ".join(sorted(errors))
            raise NotifyFailed(f"{s.host}:{s.port} refused {refused}")
        return " ".join(str(answer).split())[:200]


def describe(settings: SmtpSettings) -> str:
    return f"mail to {', '.join(settings.to)} via {settings.host}:{settings.port}"


KIND = NotifyKind("smtp", SmtpSettings, SmtpNotifier, describe)
