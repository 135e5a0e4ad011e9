"""Every metric outboxd exports, declared in one place.

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
    """One registry per process (a fresh one per test), holding every metric."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
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
        self.up = Gauge("outboxd_up", "1 while the role's loops are running.", ["role"], registry=r)
