"""The notify target kinds by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.domain.kinds import Kinds, tagged_union
from daemon.notify.kind import Notifier, NotifyKind, NotifySettings


def _smtp() -> NotifyKind[Any]:
    from daemon.notify import smtp

    return smtp.KIND


def _webhook() -> NotifyKind[Any]:
    from daemon.notify import webhook

    return webhook.KIND


# a kind's module is imported at the first lookup of its name
NOTIFY_KINDS: Kinds[NotifyKind[Any]] = Kinds("notify kind", {"smtp": _smtp, "webhook": _webhook})


def notify_settings(names: Sequence[str]) -> Any:
    """The type a notify target's settings are validated as: the settings of the
    kinds named (registered ones, in the registry's order), told apart by ``kind``."""
    kinds = NOTIFY_KINDS.named(names)
    return tagged_union([NOTIFY_KINDS[n].settings for n in kinds], "kind", NotifySettings)


def build_notifier(settings: NotifySettings) -> Notifier:
    return NOTIFY_KINDS[settings.kind].build(settings)
