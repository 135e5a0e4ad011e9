"""What the control role reads at each scrape of its /metrics, beside what it
counts itself: the queue gauges from the database and every program's state from
supervisord. The two are read at once, each within its own deadline, and one
that fails leaves the other's figures up to date.

supervisord is found as ``outboxd status`` finds it (``--supervisor`` aside):
``$OUTBOXD_SUPERVISOR``, else ``./supervisord.conf`` or ``./var/supervisor.sock``
in the working directory, which supervisord.conf sets to the suite's. While it
answers, ``outboxd_process_running{program}`` is 1 for a RUNNING program and 0
for any other state, and ``outboxd_supervisor_up`` is 1; when it does not, the
programs' series are dropped (a state nobody read is not exported as if it were
current) and ``outboxd_supervisor_up`` is 0, which an alert rule watches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from daemon.runtime.metrics import ControlMetrics
from daemon.store.aio import AsyncStore
from daemon.suite.supervisor import (
    RUNNING,
    Supervisor,
    SupervisorError,
    SupervisorUnavailable,
    supervisor_address,
)

log = logging.getLogger("outboxd.control")
# seconds supervisord gets to answer during a scrape: within the frame's deadline for
# the whole scrape (daemon.runtime.frame.HEALTH_TIMEOUT), so the call's thread is
# done before the next scrape asks again
SUPERVISOR_TIMEOUT = 1.5


class ScrapeGauges:
    """The figures a scrape brings up to date (``update``), and why supervisord
    did not answer the last time, logged once per change rather than per scrape."""

    def __init__(self, metrics: ControlMetrics, store: AsyncStore) -> None:
        self.metrics = metrics
        self.store = store
        self._supervisor_problem: str | None = None

    async def update(self, channels: Sequence[str]) -> None:
        """Both figures at once; the database's failure is raised (the frame logs
        it) after supervisord's answer is in."""
        queue, _ = await asyncio.gather(
            self._queue(channels), self._processes(), return_exceptions=True
        )
        if isinstance(queue, BaseException):
            raise queue

    async def _queue(self, channels: Sequence[str]) -> None:
        """Per channel: how many wait, are being sent, failed; the oldest pending's age."""
        gauges = await self.store.queue_gauges(list(channels))
        self.metrics.queue.clear()
        self.metrics.oldest_pending.clear()
        for (channel, status), count in gauges.counts.items():
            self.metrics.queue.labels(channel, status).set(count)
        for channel, age in gauges.oldest_pending.items():
            self.metrics.oldest_pending.labels(channel).set(age)

    async def _processes(self) -> None:
        """Every program's state as supervisord has it, or supervisord down."""
        try:
            supervisor = Supervisor(supervisor_address(), timeout=SUPERVISOR_TIMEOUT)
            programs = await asyncio.to_thread(supervisor.programs)
        except (ValueError, SupervisorUnavailable, SupervisorError) as exc:
            self.metrics.process_running.clear()
            self.metrics.supervisor_up.set(0)
            self._note(str(exc))
            return
        running = {program.fullname: program.state == RUNNING for program in programs}
        self.metrics.process_running.clear()
        for name, up in running.items():
            self.metrics.process_running.labels(name).set(1 if up else 0)
        self.metrics.supervisor_up.set(1)
        self._note(None)

    def _note(self, problem: str | None) -> None:
        if problem == self._supervisor_problem:
            return
        if problem is None:
            log.info("supervisord answers: exporting the programs' states")
        else:
            log.warning(
                "no programs' states in /metrics: supervisord does not answer",
                extra={"error": problem},
            )
        self._supervisor_problem = problem
