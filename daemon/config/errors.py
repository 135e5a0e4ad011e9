"""What a configuration that cannot be used raises: every problem with its dotted
path. Light: the command line reports it without loading the settings' models."""

from __future__ import annotations

from dataclasses import dataclass

EX_CONFIG = 78  # sysexits.h: configuration error


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """The file could not be turned into settings; ``issues`` lists every reason."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.issues) == 1:
            return f"{self.source}: {self.issues[0]}"
        lines = [f"{self.source}: {len(self.issues)} errors"]
        lines += [f"  {issue}" for issue in self.issues]
        return "\n".join(lines)
