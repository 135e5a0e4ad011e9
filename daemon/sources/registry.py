"""The source kinds by name: the one mapping from a source's ``kind:`` to its
declaration (``base.SourceKind``); a kind not in it cannot be configured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from daemon.sources import khanza
from daemon.sources.base import SourceKind, SourceSettings

SOURCE_KINDS: Mapping[str, SourceKind[Any]] = {kind.name: kind for kind in (khanza.KIND,)}

# The settings of any registered kind, told apart by ``kind``.
if TYPE_CHECKING:  # a type checker sees the base; pydantic, the union of the kinds
    AnySourceSettings = SourceSettings
else:
    AnySourceSettings = Annotated[
        Union[tuple(kind.settings for kind in SOURCE_KINDS.values())],  # noqa: UP007
        Field(discriminator="kind"),
    ]


def source_kind(settings: SourceSettings) -> SourceKind[Any]:
    kind = SOURCE_KINDS.get(settings.kind)
    if kind is None or not isinstance(settings, kind.settings):
        raise ValueError(f"{settings.kind!r} is not a registered source kind")
    return kind
