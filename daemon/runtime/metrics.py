"""Every metric outboxd exports, declared in one place, in one class per role:
a process exports ``Metrics`` (``outboxd_up``), which the frame registers, and the
families of the role it runs, which the role registers on the same registry
(``DispatcherMetrics``, ``PollerMetrics``, ``SchedulerMetrics``,
``ControlMetrics``), so a poller's /metrics carries no empty delivery families.

Labels carry channel and role names only: never a patient identifier, a key,
a payload field or a URL.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

disable_created_metrics()  # no *_created series: they double the scrape for nothing we use


class Metrics:
    """What every role's process exports, on the registry its roles add their own
    families to (one per process; a fresh one per test): whether its loops run, and
    which node, role and process it is."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.up = Gauge(
            "outboxd_up", "1 while the role's loops are running.", ["role"], registry=self.registry
        )
        self.process_info = Gauge(
            "outboxd_process_info",
            "1 for the process: its node (the YAML's node:, a host's name in the suite), "
            "role and process number.",
            ["node", "role", "process"],
            registry=self.registry,
        )


def _token_fetches(registry: CollectorRegistry) -> Counter:
    """OAuth2 token requests: a dispatcher's for its channels, a scheduler's for
    its status checks."""
    return Counter(
        "outboxd_oauth_token_fetches",
        "Requests for an OAuth2 access token by result: ok, refused (the token "
        "endpoint said no: bad credentials), failed (not reached, 5xx, 429) or "
        "invalid (an answer with no usable token); by the channel the token is for "
        "(a channel's own, or a status check's of that channel).",
        ["channel", "result"],
        registry=registry,
    )


class DispatcherMetrics:
    """The dispatcher's metrics (labelled by channel), registered by the dispatcher
    role on its process's registry: ``DispatcherMetrics(context.metrics.registry)``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.deliveries = Counter(
            "outboxd_deliveries",
            "Delivery attempts by result: delivered, retried, rejected (permanent "
            "refusal by the peer) or failed (retries exhausted).",
            ["channel", "result"],
            registry=r,
        )
        self.send_seconds = Histogram(
            "outboxd_send_duration_seconds",
            "Time from handing a message to the channel to its answer.",
            ["channel"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.in_flight = Gauge(
            "outboxd_in_flight_messages", "Messages being sent now.", ["channel"], registry=r
        )
        self.claimed = Counter(
            "outboxd_claimed_messages", "Messages leased by this process.", ["channel"], registry=r
        )
        self.claim_seconds = Histogram(
            "outboxd_claim_duration_seconds",
            "Time one claim of due messages took, from asking the store to holding the "
            "batch (an empty claim too).",
            ["channel"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.leases_lost = Counter(
            "outboxd_leases_lost",
            "Outcomes not recorded because the lease had expired.",
            ["channel"],
            registry=r,
        )
        self.leases_expired = Counter(
            "outboxd_leases_expired",
            "Leases of other, presumably dead, holders returned to pending.",
            registry=r,
        )
        self.breaker_state = Gauge(
            "outboxd_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["channel"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            "outboxd_rate_limit_waits",
            "Times a send waited for the channel's rate limit.",
            ["channel"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            "outboxd_rate_limit_wait_seconds",
            "Seconds spent waiting for the channel's rate limit.",
            ["channel"],
            registry=r,
        )
        self.loop_errors = Counter(
            "outboxd_loop_errors",
            "Errors a loop survived (database unavailable, a failed claim).",
            ["loop"],
            registry=r,
        )
        self.token_fetches = _token_fetches(r)
        self.wakeups = Counter(
            "outboxd_wakeups",
            "Wake-ups heard from the store for the channel: messages committed due now "
            "(PostgreSQL's NOTIFY, SQLite's doorbell).",
            ["channel"],
            registry=r,
        )
        self.wakeups_listening = Gauge(
            "outboxd_wakeups_listening",
            "1 while the process listens for the store's wake-ups (PostgreSQL's "
            "LISTEN, SQLite's doorbell) and its idle loops claim once a second; 0 while "
            "they poll every 5 to 50 ms instead.",
            registry=r,
        )


class PollerMetrics:
    """The poller's metrics (labelled by source name), registered by the poller role
    on its process's registry: ``PollerMetrics(context.metrics.registry)``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.runs = Counter(
            "outboxd_poll_runs",
            "Polls by result: ok, source_error (the source database down, refusing or a "
            "query failing), timeout (the source too slow), store_error, error (a bug).",
            ["source", "result"],
            registry=r,
        )
        self.duration = Histogram(
            "outboxd_poll_duration_seconds",
            "Time one poll took: reading the source, planning, storing the batch.",
            ["source"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.source_errors = Counter(
            "outboxd_source_errors",
            "Polls whose source could not be read (down, refusing, too slow, a bad query).",
            ["source"],
            registry=r,
        )
        self.enqueued = Counter(
            "outboxd_poll_messages",
            "Messages a poll stored that were not stored before.",
            ["source"],
            registry=r,
        )
        self.held = Gauge(
            "outboxd_poll_held_steps",
            "Visit steps held back (a time out of order, a code not mapped) after the last poll.",
            ["source"],
            registry=r,
        )
        self.last_success = Gauge(
            "outboxd_poll_last_success_timestamp_seconds",
            "When the last poll that stored its batch ended (Unix time).",
            ["source"],
            registry=r,
        )


class SchedulerMetrics:
    """The scheduler's metrics (labelled by schedule, job kind or notify target)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.fires = Counter(
            "outboxd_schedule_fires",
            "Fires by what became of them here: started, queued, skipped, missed, "
            "coalesced, taken (another scheduler claimed it), or ended (the schedule "
            "has made its max_runs runs: not recorded).",
            ["schedule", "result"],
            registry=r,
        )
        self.lateness = Histogram(
            "outboxd_schedule_lateness_seconds",
            "From a fire's time to its claim.",
            ["schedule"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.runs = Counter(
            "outboxd_job_runs",
            "Runs by how they ended: succeeded, failed, interrupted.",
            ["schedule", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "outboxd_job_duration_seconds",
            "How long a run took, by job kind.",
            ["job"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
            registry=r,
        )
        self.last_success = Gauge(
            "outboxd_schedule_last_success_timestamp_seconds",
            "When a run of the schedule last succeeded here (Unix time).",
            ["schedule"],
            registry=r,
        )
        self.notifications = Counter(
            "outboxd_notifications",
            "Notifications by target and result: sent or failed.",
            ["target", "result"],
            registry=r,
        )
        self.token_fetches = _token_fetches(r)


class ControlMetrics:
    """What the control role reads at scrape time (from the database and from
    supervisord) and what it counts of the partners' webhooks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.queue = Gauge(
            "outboxd_queue_messages",
            "Messages per channel that wait (pending), are being sent (sending) or failed.",
            ["channel", "status"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "outboxd_queue_oldest_pending_age_seconds",
            "Age of the channel's oldest pending message (0: none waits).",
            ["channel"],
            registry=r,
        )
        self.process_running = Gauge(
            "outboxd_process_running",
            "1 when supervisord says the program is RUNNING, else 0 (STOPPED, "
            "STARTING, BACKOFF, EXITED, FATAL...); by supervisord's name of it "
            "(group:name). Absent while supervisord does not answer.",
            ["program"],
            registry=r,
        )
        self.supervisor_up = Gauge(
            "outboxd_supervisor_up",
            "1 when supervisord answered this scrape's question for the programs' "
            "states, 0 when it did not (not running, no socket, too slow).",
            registry=r,
        )
        self.webhook_receipts = Counter(
            "outboxd_webhook_receipts",
            "Partner webhooks by result: applied, unchanged, unknown_message, "
            "unmapped_status, replayed, or refused (a bad or stale signature, or not in the form).",
            ["webhook", "result"],
            registry=r,
        )
