"""The dispatcher role: a delivery loop per channel, lease recovery, and
wake-ups from PostgreSQL notifications."""

from __future__ import annotations

import asyncio
import logging

from daemon.channels.registry import build_channel
from daemon.roles.delivery import ChannelLoop
from daemon.roles.doorbell import listen
from daemon.runtime import Context
from daemon.settings import Settings
from daemon.store import StoreUnavailable

log = logging.getLogger("outboxd.dispatcher")
DELIVERABLE = ("mllp", "http", "bpjs_antrean")


class Dispatcher:
    def __init__(self, context: Context) -> None:
        self.ctx = context
        self.settings = context.settings
        self.loops: dict[str, ChannelLoop] = {}
        self.side_tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    # --- the Role protocol ------------------------------------------------------------

    async def start(self) -> list[asyncio.Task[None]]:
        for name in self.settings.channels:
            self._start_loop(name)
        self.side_tasks.append(asyncio.create_task(self._expire_loop(), name="lease-expiry"))
        if self.ctx.store.postgres:
            db = self.ctx.store.db
            conninfo = {"dbname": db.database, **db.connect_params}
            self.side_tasks.append(
                asyncio.create_task(listen(conninfo, self._ring), name="doorbell")
            )
        return [asyncio.create_task(self._supervise(), name="dispatcher")]

    async def drain(self, timeout: float) -> None:
        await asyncio.gather(*(loop.drain(timeout) for loop in self.loops.values()))
        for task in self.side_tasks:
            task.cancel()
        await asyncio.gather(*self.side_tasks, return_exceptions=True)

    async def reload(self, settings: Settings) -> None:
        old = self.settings.channels
        self.settings = settings
        for name in set(old) | set(settings.channels):
            if old.get(name) == settings.channels.get(name):
                continue
            loop = self.loops.pop(name, None)
            if loop is not None:
                await loop.drain(self.settings.roles.dispatcher.drain_timeout)
            if name in settings.channels:
                self._start_loop(name)
            log.info("channel reloaded", extra={"channel": name})
        self.changed.set()

    def problems(self) -> list[str]:
        out = [p for loop in self.loops.values() for p in loop.problems()]
        out += [f"{t.get_name()} stopped" for t in self.side_tasks if t.done()]
        return out

    # --- internals ------------------------------------------------------------------

    def _start_loop(self, name: str) -> None:
        settings = self.settings.channels[name]
        if settings.kind not in DELIVERABLE:
            log.warning(
                "channel kind cannot deliver yet; skipped",
                extra={"channel": name, "kind": settings.kind},
            )
            return
        loop = ChannelLoop(
            name,
            settings,
            build_channel(settings),
            self.ctx.thread,
            self.ctx.metrics,
            self.ctx.owner,
            notified=self.ctx.store.postgres,
        )
        loop.start()
        self.loops[name] = loop

    def _ring(self, channel: str) -> None:
        loop = self.loops.get(channel)
        if loop is not None:
            loop.wake.set()

    async def _supervise(self) -> None:
        """Fail loudly when any loop of any channel ends on its own."""
        while True:
            watched = [t for loop in self.loops.values() for t in loop.tasks] + self.side_tasks
            self.changed.clear()
            changed = asyncio.ensure_future(self.changed.wait())
            try:
                done, _ = await asyncio.wait(
                    [*watched, changed], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
            current = {t for loop in self.loops.values() for t in loop.tasks} | set(self.side_tasks)
            for task in done:
                if task is changed or task not in current:
                    continue
                error = None if task.cancelled() else task.exception()
                raise RuntimeError(f"{task.get_name()} ended unexpectedly: {error!r}") from error

    async def _expire_loop(self) -> None:
        leases = [c.lease for c in self.settings.channels.values()] or [60.0]
        interval = max(0.5, min(5.0, min(leases) / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                expired = await self.ctx.thread.run(self.ctx.store.expire_leases)
            except StoreUnavailable:
                self.ctx.metrics.loop_errors.labels("lease_expiry").inc()
                continue
            if expired:
                self.ctx.metrics.leases_expired.inc(len(expired))
                log.warning("expired leases returned to pending", extra={"count": len(expired)})
                for loop in self.loops.values():
                    loop.wake.set()
