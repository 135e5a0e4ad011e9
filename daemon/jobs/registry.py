"""The job kinds by name; a kind not in it cannot be scheduled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daemon.jobs import command, export, http, purge, report, status_check
from daemon.jobs.kind import JobKind

JOB_KINDS: Mapping[str, JobKind[Any]] = {
    kind.name: kind
    for kind in (purge.KIND, export.KIND, status_check.KIND, report.KIND, http.KIND, command.KIND)
}
