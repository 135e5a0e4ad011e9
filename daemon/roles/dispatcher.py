"""The dispatcher role: a delivery loop per channel, lease recovery, and
wake-ups from PostgreSQL notifications; its children on the common frame."""

from __future__ import annotations

import asyncio
import functools
import logging

from daemon.channels.kind import ChannelSettings
from daemon.channels.registry import build_channel
from daemon.config.settings import Settings
from daemon.domain.errors import StoreUnavailable
from daemon.roles.delivery import ChannelLoop
from daemon.roles.tallies import tallies_child
from daemon.runtime.frame import ChildSpec, Context, RoleBase, TaskChild
from daemon.runtime.metrics import DispatcherMetrics

log = logging.getLogger("outboxd.dispatcher")


def expiry_interval(settings: Settings) -> float:
    """How often to look for expired leases: a quarter of the shortest lease, 0.5-5 s."""
    leases = [c.lease for c in settings.channels.values()] or [60.0]
    return max(0.5, min(5.0, min(leases) / 4))


class Dispatcher(RoleBase):
    def __init__(self, context: Context) -> None:
        self.ctx = context
        self.metrics = DispatcherMetrics(context.metrics.registry)
        self.loops: dict[str, ChannelLoop] = {}  # by channel, for the doorbell
        self.listening = False  # is the doorbell there now? The loops poll seldom while it is

    def children(self, settings: Settings) -> list[ChildSpec]:
        self.loops = {n: loop for n, loop in self.loops.items() if n in settings.channels}
        specs = [
            ChildSpec(f"channel {name}", channel, functools.partial(self._loop, name, channel))
            for name, channel in settings.channels.items()
        ]
        interval = expiry_interval(settings)
        specs.append(
            ChildSpec(
                "lease expiry",
                interval,
                lambda: TaskChild("lease-expiry", functools.partial(self._expire_loop, interval)),
            )
        )
        specs.append(tallies_child(self.ctx.store))
        if self.ctx.store.notifies:
            listen = functools.partial(self.ctx.store.listen, self._ring, self._listening)
            specs.append(ChildSpec("doorbell", None, lambda: TaskChild("doorbell", listen)))
        return specs

    def _loop(self, name: str, settings: ChannelSettings) -> ChannelLoop:
        loop = ChannelLoop(
            name,
            settings,
            build_channel(settings),
            self.ctx.store,
            self.metrics,
            self.ctx.owner,
            notified=lambda: self.listening,
        )
        self.loops[name] = loop
        return loop

    def _listening(self, now: bool) -> None:
        self.listening = now
        self.metrics.wakeups_listening.set(1 if now else 0)

    def _ring(self, channel: str) -> None:
        loop = self.loops.get(channel)
        if loop is not None:
            loop.wake.set()
            self.metrics.wakeups.labels(channel).inc()

    async def _expire_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                expired = await self.ctx.store.expire_leases()
            except StoreUnavailable:
                self.metrics.loop_errors.labels("lease_expiry").inc()
                continue
            if expired:
                self.metrics.leases_expired.inc(len(expired))
                log.warning("expired leases returned to pending", extra={"count": len(expired)})
                for loop in self.loops.values():
                    loop.wake.set()
