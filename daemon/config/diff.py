"""What changed between two settings, for the reload log: one ``Change`` per
changed value, named by its path in the YAML file and shown as the file has it::

    schedules.nightly.cron: "0 2 * * *" → "0 3 * * *"
    channels.hie.rate: 20/s → 5/s
    channels.hie.retry.backoff: 30s → 1m
    webhooks.filing.secret: changed
    channels.fax: added
    alerts[1]: removed

Durations are spelled as in the YAML file, a string with a space in it is
quoted. Nothing that may hold a secret is shown: secrets, header values and a
token's digest say ``changed``, and of a URL only where it goes
(``http://10.0.0.5:8080/…``; a URL whose path alone changed says ``changed``).

``config_changes`` is the whole file's, by its YAML paths; ``changes`` is the
same walk over one part (a channel's settings), as phrases relative to it
(``rate 20/s → 5/s``), for the line a rebuilt child logs. ``restart_only``
says which paths a running role reads at start only.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo

from daemon.domain.fields import setting_duration
from daemon.domain.units import format_duration

_LIMIT = 60  # characters of one value shown
_HIDDEN_MAPPINGS = frozenset({"headers"})  # mappings whose values may be credentials
_HIDDEN_FIELDS = frozenset({"sha256"})  # values that name a credential: never shown
_MISSING: Any = object()

How = Literal["changed", "masked", "added", "removed"]


@dataclass(frozen=True)
class Change:
    """One changed value: its YAML path, and what it was and is as shown (both
    empty unless ``how`` is ``changed``: a masked one is only said to change)."""

    path: str
    how: How
    old: str = ""
    new: str = ""

    def __str__(self) -> str:
        """``path: old → new``, ``path: changed``, ``path: added`` or ``path: removed``."""
        return f"{self.path}: {self._what()}"

    def phrase(self) -> str:
        """``path old → new``, ``path changed``… (the words of a rebuilt child's line)."""
        return f"{self.path} {self._what()}"

    def _what(self) -> str:
        if self.how == "changed":
            return f"{self.old} → {self.new}"
        return "changed" if self.how == "masked" else self.how


def config_changes(old: BaseModel, new: BaseModel) -> list[Change]:
    """Every value that differs between two settings, by YAML path, in the order
    of the file's sections (a mapping's keys in the old file's order, then those
    added)."""
    return _walk(old, new, "", None)


def changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """One phrase per changed value under ``prefix``: ``path old → new``,
    ``path changed`` (a secret), ``path added`` / ``path removed``."""
    return [c.phrase() for c in _walk(old, new, prefix, None)]


def restart_only(path: str, role: str) -> bool:
    """Whether ``role`` reads the value at ``path`` at start only: its database,
    its logging and its own ``roles.ROLE`` settings but ``drain_timeout``."""
    head = path.split("[", 1)[0]
    if head.split(".", 1)[0] in ("database", "logging"):
        return True
    return head.startswith(f"roles.{role}") and not head.endswith(".drain_timeout")


# --- the walk ---------------------------------------------------------------------


def _walk(old: Any, new: Any, path: str, info: FieldInfo | None) -> list[Change]:
    if old is _MISSING:
        return [Change(path or "value", "added")]
    if new is _MISSING:
        return [Change(path or "value", "removed")]
    if _same(old, new):
        return []
    if isinstance(old, BaseModel) and isinstance(new, BaseModel):
        return _models(old, new, path)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return _mappings(old, new, path)
    if _compound(old) and _compound(new):
        return _sequences(old, new, path)
    return [_leaf(path or "value", old, new, info)]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # a value that cannot be compared is taken as changed
        return False


def _models(old: BaseModel, new: BaseModel, path: str) -> list[Change]:
    """Field by field; models of two kinds (a channel's ``kind`` changed) by the
    fields of both."""
    fields = dict(type(old).model_fields)
    fields.update((n, i) for n, i in type(new).model_fields.items() if n not in fields)
    out: list[Change] = []
    for name, info in fields.items():
        a, b = getattr(old, name, _MISSING), getattr(new, name, _MISSING)
        out += _walk(a, b, _join(path, info.alias or name), info)
    return out


def _mappings(old: Mapping[Any, Any], new: Mapping[Any, Any], path: str) -> list[Change]:
    hidden = _last(path) in _HIDDEN_MAPPINGS
    keys = [*old, *(k for k in new if k not in old)]
    out: list[Change] = []
    for key in keys:
        where = _join(path, str(key))
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if hidden and a is not _MISSING and b is not _MISSING:
            out += [] if _same(a, b) else [Change(where, "masked")]
        else:
            out += _walk(a, b, where, None)
    return out


def _compound(value: Any) -> bool:
    """A list of models, mappings or secrets: compared item by item."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and any(isinstance(v, BaseModel | Mapping | SecretStr) for v in value)
    )


def _sequences(old: Sequence[Any], new: Sequence[Any], path: str) -> list[Change]:
    out: list[Change] = []
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else _MISSING
        b = new[i] if i < len(new) else _MISSING
        out += _walk(a, b, f"{path}[{i}]", None)
    return out


def _leaf(path: str, a: Any, b: Any, info: FieldInfo | None) -> Change:
    if isinstance(a, SecretStr) or isinstance(b, SecretStr) or _last(path) in _HIDDEN_FIELDS:
        return Change(path, "masked")
    duration = info is not None and _is_duration(info.annotation, info.metadata)
    old, new = _show(a, duration), _show(b, duration)
    if old == new:  # what differs is not shown (a URL's path): say only that it changed
        return Change(path, "masked")
    return Change(path, "changed", old, new)


def _show(value: Any, duration: bool) -> str:
    """A value as the YAML file would spell it, on one line, not too long."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if duration and isinstance(value, int | float):
        return format_duration(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, BaseModel | Mapping):
        return "{…}"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return _cut("[" + ", ".join(_show(v, duration) for v in value) + "]")
    text = str(value)
    if "://" in text:
        text = _where(text)
    text = _cut(" ".join(text.split()))
    return json.dumps(text, ensure_ascii=False) if not text or " " in text else text


def _cut(text: str) -> str:
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"


def _is_duration(annotation: Any, metadata: Sequence[Any] = ()) -> bool:
    """Whether a field is a duration (``30s``): its validator, or one of the
    types it may be (``Duration | None``), says so."""
    if any(isinstance(m, BeforeValidator) and m.func is setting_duration for m in metadata):
        return True
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _is_duration(base, extra)
    return any(_is_duration(arg) for arg in typing.get_args(annotation))


def _where(url: str) -> str:
    """Where a URL goes, without credentials, path or query."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL)"
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _last(path: str) -> str:
    return path.rpartition(".")[2]
