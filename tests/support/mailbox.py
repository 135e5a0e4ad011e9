"""An SMTP server on loopback for tests: what outboxd's notifiers and
Alertmanager send by mail."""

from __future__ import annotations

from email import message_from_bytes
from email.message import Message
from typing import Any

from tests.support.ports import free_port


class Mailbox:
    """An SMTP server on loopback (aiosmtpd's handler; start it with
    ``aiosmtpd.controller.Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)``)
    keeping what it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = free_port()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"
