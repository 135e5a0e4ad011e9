"""The store as the roles see it: every operation a coroutine, ``await
store.claim(…)``. Where the work runs is a private detail chosen by the settings:
on a thread of this process (``StoreThread``) or in a worker process of its own
(``StoreProcess``, for a busy event loop); both take an operation's name and
arguments and run it as one unit of work that a cancelled await does not cut
short. The operations are ``Store``'s own, so their signatures and documents
are there.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from daemon.config.database import DatabaseSettings
from daemon.store.address import is_postgres_url, listen_conninfo, sqlite_path
from daemon.store.doorbell import listen as listen_doorbell
from daemon.store.doorbell import listener_folder

if TYPE_CHECKING:
    from daemon.store.spawn import Spawned
    from daemon.store.sync import Store
else:

    class _Names:
        """``Store.claim`` below, at run time: only the operation's name. A process
        whose store work runs in a worker process never loads the store (nor its
        database driver); the type checker sees ``Store`` itself."""

        def __getattr__(self, name: str) -> Any:
            return types.SimpleNamespace(__name__=name, __doc__=None)

    Store = _Names()

P = ParamSpec("P")
T = TypeVar("T")


class StoreRunner(Protocol):
    """Runs the store operation ``name`` with its arguments, to its end even when
    the await is cancelled."""

    async def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...

    async def aclose(self) -> None: ...


class _Operation(Generic[P, T]):
    """``Store.method`` as a coroutine method of ``AsyncStore``."""

    def __init__(self, method: Callable[Concatenate[Store, P], T]) -> None:
        self.name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> _Operation[P, T]: ...

    @overload
    def __get__(self, obj: AsyncStore, owner: type) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, obj: AsyncStore | None, owner: type) -> Any:
        if obj is None:
            return self
        return functools.partial(obj._call, self.name)


class AsyncStore:
    def __init__(
        self, runner: StoreRunner, database: DatabaseSettings, store: Store | None = None
    ) -> None:
        self._runner = runner
        self._store = store  # the store of this process, when its work runs on a thread
        url = database.url.get_secret_value()
        self.postgres = is_postgres_url(url)
        self._conninfo = listen_conninfo(database)
        self._doorbell = _doorbell_folder(url)

    @property
    def runs_in_process(self) -> bool:
        from daemon.store.process import StoreProcess

        return isinstance(self._runner, StoreProcess)

    @property
    def notifies(self) -> bool:
        """Does the store wake listeners when messages fall due (PostgreSQL's
        NOTIFY, SQLite's doorbell)? Else the delivery loops poll often."""
        return self._conninfo is not None or self._doorbell is not None

    async def listen(
        self, ring: Callable[[str], None], listening: Callable[[bool], None] = lambda _: None
    ) -> None:
        """Call ``ring(channel)`` whenever messages of that channel were committed
        due now, listening again forever when the listener fails (on a connection
        of its own, or the doorbell's socket), and ``listening(True)`` once it
        listens, ``listening(False)`` once it no longer does; returns at once where
        the store has no such signal."""
        if self._conninfo is not None:
            from daemon.store.listen import listen

            await listen(self._conninfo, ring, listening)
        elif self._doorbell is not None:
            await listen_doorbell(self._doorbell, ring, listening)

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await self._runner.call(name, args, kwargs)

    async def aclose(self) -> None:
        await self._runner.aclose()

    check_schema = _Operation(Store.check_schema)
    ping = _Operation(Store.ping)
    # delivery
    enqueue = _Operation(Store.enqueue)
    enqueue_many = _Operation(Store.enqueue_many)
    claim = _Operation(Store.claim)
    record = _Operation(Store.record)
    resend_predecessors = _Operation(Store.resend_predecessors)
    take_tokens = _Operation(Store.take_tokens)
    renew_leases = _Operation(Store.renew_leases)
    expire_leases = _Operation(Store.expire_leases)
    # sources and their visits
    get_cursor = _Operation(Store.get_cursor)
    task_progress = _Operation(Store.task_progress)
    sync_visits = _Operation(Store.sync_visits)
    find_visits = _Operation(Store.find_visits)
    troubled_visits = _Operation(Store.troubled_visits)
    # operators
    list_messages = _Operation(Store.list_messages)
    message_timeline = _Operation(Store.message_timeline)
    retry = _Operation(Store.retry)
    cancel = _Operation(Store.cancel)
    resend = _Operation(Store.resend)
    advance_operation = _Operation(Store.advance_operation)
    operation = _Operation(Store.operation)
    operations = _Operation(Store.operations)
    stats = _Operation(Store.stats)
    audit = _Operation(Store.audit)
    record_action = _Operation(Store.record_action)
    queue_gauges = _Operation(Store.queue_gauges)
    per_minute = _Operation(Store.per_minute)
    fold_tallies = _Operation(Store.fold_tallies)
    # schedules and the fire ledger
    schedules = _Operation(Store.schedules)
    schedule = _Operation(Store.schedule)
    sync_file_schedules = _Operation(Store.sync_file_schedules)
    last_fires = _Operation(Store.last_fires)
    claim_fire = _Operation(Store.claim_fire)
    claim_fires = _Operation(Store.claim_fires)
    record_fires = _Operation(Store.record_fires)
    queue_runs = _Operation(Store.queue_runs)
    start_queued = _Operation(Store.start_queued)
    renew_runs = _Operation(Store.renew_runs)
    finish_run = _Operation(Store.finish_run)
    finish_runs = _Operation(Store.finish_runs)
    expired_runs = _Operation(Store.expired_runs)
    interrupt_run = _Operation(Store.interrupt_run)
    runs = _Operation(Store.runs)
    cancel_run = _Operation(Store.cancel_run)
    cancel_requests = _Operation(Store.cancel_requests)
    put_schedule = _Operation(Store.put_schedule)
    remove_schedule = _Operation(Store.remove_schedule)
    pause_schedule = _Operation(Store.pause_schedule)
    # the jobs' work
    purge_messages = _Operation(Store.purge_messages)
    purge_runs = _Operation(Store.purge_runs)
    purge_notifications = _Operation(Store.purge_notifications)
    compact_text_index = _Operation(Store.compact_text_index)
    text_index_rows = _Operation(Store.text_index_rows)
    purge_receipts = _Operation(Store.purge_receipts)
    export_page = _Operation(Store.export_page)
    due_status_checks = _Operation(Store.due_status_checks)
    record_status_checks = _Operation(Store.record_status_checks)
    # partners' status callbacks
    receive_webhook = _Operation(Store.receive_webhook)
    webhook_receipts = _Operation(Store.webhook_receipts)
    # alerts
    alert_inputs = _Operation(Store.alert_inputs)
    move_alerts = _Operation(Store.move_alerts)
    record_notification = _Operation(Store.record_notification)
    notifications = _Operation(Store.notifications)
    breakers = _Operation(Store.breakers)
    report_breaker = _Operation(Store.report_breaker)


def open_async_store(
    database: DatabaseSettings,
    *,
    in_process: bool,
    log_level: str = "INFO",
    log_format: str = "text",
    process: str = "outboxd",
    spawned: Spawned | None = None,
    node: str | None = None,
) -> AsyncStore:
    """The store for a role: its work on a thread, or (``in_process``) in a
    worker process of its own (started at the first call, or ``spawned`` ahead of
    it by ``daemon.store.spawn.start_worker``). It never creates a database:
    ``outboxd migrate`` does."""
    if not in_process:
        from daemon.store.db import open_database
        from daemon.store.sync import Store
        from daemon.store.thread import StoreThread

        store = Store(open_database(database, create=False))
        return AsyncStore(StoreThread(store), database, store)
    from daemon.store.process import StoreProcess

    runner = StoreProcess(database, log_level, log_format, process, spawned=spawned, node=node)
    return AsyncStore(runner, database)


def _doorbell_folder(url: str) -> str | None:
    """The doorbell folder a dispatcher of this SQLite database listens in; None
    for PostgreSQL, or where it may not (``daemon.store.doorbell.listener_folder``)."""
    path = sqlite_path(url)
    return None if path is None else listener_folder(path)
