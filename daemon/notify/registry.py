"""The notify target kinds by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from daemon.notify import smtp, webhook
from daemon.notify.kind import Notifier, NotifyKind, NotifySettings

NOTIFY_KINDS: Mapping[str, NotifyKind[Any]] = {k.name: k for k in (smtp.KIND, webhook.KIND)}

if TYPE_CHECKING:  # a type checker sees the base; pydantic, the union of the kinds
    AnyNotifySettings = NotifySettings
else:
    AnyNotifySettings = Annotated[
        Union[tuple(kind.settings for kind in NOTIFY_KINDS.values())],  # noqa: UP007
        Field(discriminator="kind"),
    ]


def build_notifier(settings: NotifySettings) -> Notifier:
    return NOTIFY_KINDS[settings.kind].build(settings)
