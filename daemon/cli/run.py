"""``outboxd run ROLE``: a role's process, as supervisord starts it. It reads and
parses its YAML file, then starts the store's worker process (where the role has
one) for the database the file names, before it imports even the settings
models, so that the worker's imports overlap all of this process's own; then it
validates the settings and loads the frame, the role and what the role runs;
nothing else of the command line is loaded."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
from typing import TYPE_CHECKING

from daemon.cli.errors import EX_USAGE, CliError
from daemon.cli.roles import ROLES
from daemon.config.document import database_url, read_document
from daemon.store.address import backend_of
from daemon.store.drivers import only_for

if TYPE_CHECKING:
    from daemon.store.spawn import Spawned


# Roles whose store work runs in a worker process unless the file says otherwise
# (``roles.dispatcher.store_process``, true by default): the worker is started
# before the settings are validated, so that its imports overlap all of this
# process's.
WORKER_ROLES = ("dispatcher",)


def cmd_run(args: argparse.Namespace) -> int:
    document = read_document(args.config, os.environ)  # a file that cannot be read: exit 78
    backend = backend_of(database_url(document, os.environ))
    only_for(backend)  # the drivers a store on another backend would use stay unloaded
    spawned = None
    if args.role in WORKER_ROLES:
        from daemon.store.spawn import start_worker

        spawned = start_worker(backend)
    try:
        from daemon.config.loader import settings_of  # after the worker's start: see above

        settings = settings_of(document)
        if spawned is not None and not getattr(settings.roles, args.role).store_process:
            _stop(spawned)  # the file keeps this role's store work on a thread
            spawned = None
        from daemon.runtime.frame import NoHealthPort, RoleFactory, run_role

        module, _, attribute = ROLES[args.role].partition(":")
        factory: RoleFactory = getattr(importlib.import_module(module), attribute)
        try:
            return run_role(args.role, args.process_num, args.config, factory, settings, spawned)
        except NoHealthPort as exc:
            raise CliError(f"--process-num: {exc}", EX_USAGE) from None
    finally:
        if spawned is not None:  # the store closed it, or never took it: it ends now
            _stop(spawned)


def _stop(spawned: Spawned) -> None:
    """Close the daemon's end of a worker's socket (a worker that has not had its
    settings exits at once) and wait for it to end."""
    spawned.sock.close()
    try:
        spawned.process.wait(5)
    except subprocess.TimeoutExpired:
        spawned.process.kill()
        spawned.process.wait()
