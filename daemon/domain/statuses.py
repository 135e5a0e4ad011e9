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


RUN_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED_RUN, INTERRUPTED, SKIPPED, MISSED, COALESCED)


FINISHED_RUNS = (SUCCEEDED, FAILED_RUN, INTERRUPTED, SKIPPED, MISSED, COALESCED)


OPERATION_RUNNING = "running"


OPERATION_FINISHED = "finished"
