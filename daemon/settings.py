"""The typed, frozen settings a YAML file is validated into.

Every model forbids unknown keys (``daemon.fields.Model``). A channel's or a
source's settings are its kind's model (``daemon.channels.registry``,
``daemon.sources.registry``); secrets are ``SecretStr`` so they never show in a
repr or a log line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr

from daemon.channels.registry import AnyChannelSettings
from daemon.eventloop import EventLoopName
from daemon.fields import (
    CronExpression,
    Flag,
    Host,
    Model,
    Name,
    Port,
    PositiveDuration,
    TimeZoneName,
)
from daemon.sources.registry import AnySourceSettings
from daemon.store.db import DatabaseSettings

__all__ = ["DatabaseSettings", "RoleSettings", "Settings"]


class ScheduleSettings(Model):
    cron: CronExpression
    job: Literal["purge", "export", "report", "status_sweep"]
    timezone: TimeZoneName | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    enabled: Flag = True


class ControlSettings(Model):
    host: Host = "127.0.0.1"
    port: Port = 8080
    token: SecretStr | None = None


class RoleSettings(Model):
    host: Host = "127.0.0.1"
    base_port: Port
    drain_timeout: PositiveDuration = 30.0
    # The asyncio event loop implementation: "uvloop" (libuv; less CPU per message,
    # the default where it is installed, i.e. not on Windows) or "asyncio" (the
    # standard library's).
    event_loop: EventLoopName = "uvloop"


class DispatcherRoleSettings(RoleSettings):
    # Run the process's database work in a child process of its own (true) or on
    # a thread (false). A busy event loop and a store thread take turns on one
    # interpreter lock, so a thread makes both wait; a child process does not
    # (about 1.5x the messages a second on SQLite). Read at start.
    store_process: Flag = True


class RolesSettings(Model):
    poller: RoleSettings = RoleSettings(base_port=9100)
    dispatcher: DispatcherRoleSettings = DispatcherRoleSettings(base_port=9110)
    scheduler: RoleSettings = RoleSettings(base_port=9130)
    control: RoleSettings = RoleSettings(base_port=9140)


class LoggingSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


def _database_shorthand(value: object) -> object:
    return {"url": value} if isinstance(value, str) else value


class Settings(Model):
    database: Annotated[DatabaseSettings, BeforeValidator(_database_shorthand)]
    timezone: TimeZoneName = "UTC"
    channels: dict[Name, AnyChannelSettings] = Field(default_factory=dict)
    sources: dict[Name, AnySourceSettings] = Field(default_factory=dict)
    schedules: dict[Name, ScheduleSettings] = Field(default_factory=dict)
    control: ControlSettings = ControlSettings()
    roles: RolesSettings = RolesSettings()
    logging: LoggingSettings = LoggingSettings()
