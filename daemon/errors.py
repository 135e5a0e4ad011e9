"""Errors the command line turns into an exit code, shared by the roles."""


class StartupError(Exception):
    """A role cannot start (a port in use, …); the text says why."""


class Refused(ValueError):
    """An operator's request refused before anything changed; the CLI and the
    API each answer it their way. ``kind``: ``usage`` (asked wrongly: exit 64,
    400), ``data`` (what it names cannot be done: exit 65, 400 or 422),
    ``missing`` (no such thing: exit 65, 404); ``field`` names what is at fault."""

    def __init__(self, text: str, kind: str = "data", field: str | None = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.field = field
