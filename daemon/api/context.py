"""What the API's handlers reach: the settings as last loaded, the store, the
metrics, and the caller as an ``Operator``. Set on the app under ``CONTROL``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from aiohttp import web

from daemon.config.settings import Settings
from daemon.domain.auth import Principal
from daemon.operator.base import Operator
from daemon.runtime.frame import Context
from daemon.runtime.metrics import ControlMetrics
from daemon.store.aio import AsyncStore


@dataclass
class Control:
    context: Context
    metrics: ControlMetrics
    operations_due: asyncio.Event = field(default_factory=asyncio.Event)

    def wake_operations(self) -> None:
        """A bulk operation was started: the control role's worker goes on with it now."""
        self.operations_due.set()

    @property
    def settings(self) -> Settings:
        return self.context.settings  # a reload replaces it

    @property
    def store(self) -> AsyncStore:
        return self.context.store

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)


CONTROL = web.AppKey("control", Control)
PRINCIPAL = web.RequestKey("principal", Principal)  # who is calling


def control_of(request: web.Request) -> Control:
    return request.app[CONTROL]


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def actor_of(request: web.Request) -> str:
    """How the audit names the caller: ``api:<token name>``."""
    return f"api:{principal_of(request).name}"


def operator_of(request: web.Request) -> Operator:
    """The caller as the operator layer takes it: the store, the settings as
    last loaded, the actor."""
    control = control_of(request)
    return Operator(control.store, control.settings, actor_of(request))
