"""The settings of a ``bpjs_antrean`` channel: the service's URL and a hospital's credentials."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from daemon.channels.kind import ChannelSettings
from daemon.domain.fields import HttpUrl, Line, PositiveDuration


class BpjsAntreanSettings(ChannelSettings):
    kind: Literal["bpjs_antrean"]
    base_url: HttpUrl
    cons_id: Line
    secret: SecretStr
    user_key: SecretStr
    timeout: PositiveDuration = 30.0
    # Seconds to wait for the TCP (and TLS) connection before counting a transport failure.
    connect_timeout: PositiveDuration = 10.0
    # How long to wait before retrying a task BPJS refused because its predecessor task
    # (or the booking's antrean/add) has not been recorded yet (201 "TaskId=N tidak
    # valid / TaskId sebelumnya belum terkirim", "TaskId=N belum ada"). Such waits do
    # not count as attempts; retry.max_age bounds them.
    predecessor_wait: PositiveDuration = 60.0
    # The Content-Type of every call; the body is the same JSON either way. "json" sends
    # application/json (the reference); "form" sends application/x-www-form-urlencoded,
    # as some clients do (unconfirmed which one BPJS prefers, so it is a setting).
    content_type: Literal["json", "form"] = "json"
