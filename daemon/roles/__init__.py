"""The roles a process can run (``outboxd run NAME``), on the frame
(``daemon.runtime.frame``). May import runtime, suite, operator and below; no face.

``ROLES`` maps a role's name to where it is defined; it is imported only when run.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from daemon.runtime.frame import RoleFactory

ROLES: Mapping[str, str] = {
    "dispatcher": "daemon.roles.dispatcher:Dispatcher",
    "poller": "daemon.roles.poller:Poller",
    "scheduler": "daemon.roles.scheduler:Scheduler",
    "control": "daemon.api.role:Control",
}


def role_factory(name: str) -> RoleFactory:
    module, _, attribute = ROLES[name].partition(":")
    factory: RoleFactory = getattr(importlib.import_module(module), attribute)
    return factory
