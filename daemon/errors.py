"""Errors the command line turns into an exit code, shared by the roles."""


class StartupError(Exception):
    """A role cannot start (a port in use, …); the text says why."""
