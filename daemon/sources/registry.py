"""The source kinds by name: the one mapping from a source's ``kind:`` to its
declaration (``base.SourceKind``); a kind not in it cannot be configured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.domain.kinds import Kinds, tagged_union
from daemon.sources.base import SourceKind, SourceSettings


def _khanza() -> SourceKind[Any]:
    from daemon.sources import khanza

    return khanza.KIND


# a kind's module is imported at the first lookup of its name
SOURCE_KINDS: Kinds[SourceKind[Any]] = Kinds("source kind", {"khanza": _khanza})


def source_settings(names: Sequence[str]) -> Any:
    """The type a source's settings are validated as: the settings of the kinds
    named (registered ones, in the registry's order), told apart by ``kind``."""
    kinds = SOURCE_KINDS.named(names)
    return tagged_union([SOURCE_KINDS[n].settings for n in kinds], "kind", SourceSettings)


def source_kind(settings: SourceSettings) -> SourceKind[Any]:
    kind = SOURCE_KINDS.get(settings.kind)
    if kind is None or not isinstance(settings, kind.settings):
        raise ValueError(f"{settings.kind!r} is not a registered source kind")
    return kind
