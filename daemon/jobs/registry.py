"""The job kinds by name; a kind not in it cannot be scheduled."""

from __future__ import annotations

from typing import Any

from daemon.domain.kinds import Kinds
from daemon.jobs.kind import JobKind


def _purge() -> JobKind[Any]:
    from daemon.jobs import purge

    return purge.KIND


def _export() -> JobKind[Any]:
    from daemon.jobs import export

    return export.KIND


def _status_check() -> JobKind[Any]:
    from daemon.jobs import status_check

    return status_check.KIND


def _report() -> JobKind[Any]:
    from daemon.jobs import report

    return report.KIND


def _http() -> JobKind[Any]:
    from daemon.jobs import http

    return http.KIND


def _command() -> JobKind[Any]:
    from daemon.jobs import command

    return command.KIND


# a kind's module is imported at the first lookup of its name
JOB_KINDS: Kinds[JobKind[Any]] = Kinds(
    "job kind",
    {
        "purge": _purge, "export": _export, "status_check": _status_check,
        "report": _report, "http": _http, "command": _command,
    },
)  # fmt: skip
