"""The statuses a message, a run of a schedule and a bulk operation can have."""

from __future__ import annotations

# Message statuses.
PENDING = "pending"


SENDING = "sending"


SENT = "sent"


FAILED = "failed"


CANCELLED = "cancelled"


CONFIRMED = "confirmed"


REJECTED = "rejected"


STATUSES = (PENDING, SENDING, SENT, FAILED, CANCELLED, CONFIRMED, REJECTED)


DELIVERED = (SENT, CONFIRMED)  # delivered: a prerequisite in one of these is met


# Run statuses: the fire ledger.
QUEUED = "queued"  # waiting to start: a run asked for, a retry, one behind a running run


RUNNING = "running"


SUCCEEDED = "succeeded"


FAILED_RUN = "failed"


INTERRUPTED = "interrupted"  # its scheduler died or was stopped while it ran


SKIPPED = "skipped"  # the overlap policy: the last run was still running


MISSED = "missed"  # fell due while no scheduler ran, beyond the catch-up window


COALESCED = "coalesced"  # fell due while no scheduler ran: caught up as one run


CANCELLED_RUN = "cancelled"  # an operator cancelled it (queued, or stopped while it ran)


RUN_STATUSES = (
    QUEUED, RUNNING, SUCCEEDED, FAILED_RUN, INTERRUPTED, CANCELLED_RUN, SKIPPED, MISSED, COALESCED,
)  # fmt: skip


FINISHED_RUNS = (SUCCEEDED, FAILED_RUN, INTERRUPTED, CANCELLED_RUN, SKIPPED, MISSED, COALESCED)


# Not a run's status: what a claim answers for a fire of a schedule that has made its
# ``max_runs`` runs. Such a fire is not recorded: the schedule has ended.
ENDED = "ended"


OPERATION_RUNNING = "running"


OPERATION_FINISHED = "finished"


# What a notification is about: an alert firing (or again, a window later), its
# resolution, a report job's report.
NOTIFICATION_EVENTS = ("firing", "resolved", "report")
