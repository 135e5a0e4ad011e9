"""Kinds by name (channel kinds, source kinds, job kinds, notify kinds), each
loaded the first time it is asked for: a process imports the kinds its file
names, not every kind outboxd has; and the type pydantic validates a kind's
settings with, told apart by their tag (``kind:`` or ``job:``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Generic, Protocol, TypeVar, Union

from pydantic import Field


class Named(Protocol):
    @property
    def name(self) -> str: ...


K = TypeVar("K", bound=Named)


class KindUnavailable(RuntimeError):
    """A registered kind whose module failed to load (a broken install), or whose
    loader gave another kind: what it is and its name, with the cause."""

    def __init__(self, what: str, name: str, why: str) -> None:
        super().__init__(f"the {what} {name!r} cannot be loaded: {why}")
        self.what = what
        self.name = name


class Kinds(Mapping[str, K], Generic[K]):
    """A mapping from a kind's name to its declaration, whose loaders (one small
    function per kind, importing its module) run at the first lookup of their
    name. Membership and iteration read the names only; ``values()`` and
    ``items()`` load every kind."""

    def __init__(self, what: str, loaders: Mapping[str, Callable[[], K]]) -> None:
        self._what = what  # "channel kind": for the error of a loader that lies
        self._loaders = dict(loaders)
        self._loaded: dict[str, K] = {}

    def __getitem__(self, name: str) -> K:
        kind = self._loaded.get(name)
        if kind is None:
            load = self._loaders[name]  # KeyError: no kind of that name
            try:
                kind = load()
            except Exception as exc:  # not a KeyError: ``get`` would call it "no such kind"
                raise KindUnavailable(self._what, name, f"{type(exc).__name__}: {exc}") from exc
            if kind.name != name:
                raise KindUnavailable(self._what, name, f"its module declares {kind.name!r}")
            self._loaded[name] = kind
        return kind

    def __contains__(self, name: object) -> bool:
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def named(self, names: Sequence[str]) -> tuple[str, ...]:
        """Those of ``names`` that are kinds here, in this mapping's order, once each."""
        wanted = set(names)
        return tuple(name for name in self._loaders if name in wanted)


def tagged_union(models: Sequence[type[Any]], tag: str, base: type[Any]) -> Any:
    """The type a kind's settings are validated as: one of ``models``, picked by the
    value of their ``tag`` field; ``base`` where there is none (an empty section)."""
    if not models:
        return base
    return Annotated[Union[tuple(models)], Field(discriminator=tag)]  # noqa: UP007
