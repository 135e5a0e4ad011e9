"""What changed between two settings, in words, for the reload log:
``rate 20/s → 5/s, retry.max_attempts 12 → 20``. Durations are spelled as in the
YAML file. Nothing that may hold a secret is shown: secrets and header values
(``secret changed``, ``headers.X-Api-Key changed``), and of a URL only where it
goes (``http://10.0.0.5:8080/…``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo

from daemon.domain.fields import setting_duration
from daemon.domain.units import format_duration

_LIMIT = 60  # characters of one value shown
_HIDDEN = frozenset({"headers"})  # mappings whose values may be credentials


def changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """One phrase per changed leaf: ``path old → new``; ``path added`` / ``removed``."""
    if type(old) is type(new) and isinstance(old, BaseModel):
        out: list[str] = []
        for name, info in type(old).model_fields.items():
            a, b = getattr(old, name), getattr(new, name)
            if a != b:
                out += _leaf_or_deeper(a, b, _join(prefix, name), info)
        return out
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        hidden = prefix.rpartition(".")[2] in _HIDDEN
        out = []
        for key in sorted(set(old) | set(new), key=str):
            path = _join(prefix, str(key))
            if key not in new:
                out.append(f"{path} removed")
            elif key not in old:
                out.append(f"{path} added")
            elif old[key] != new[key]:
                out += [f"{path} changed"] if hidden else changes(old[key], new[key], path)
        return out
    if isinstance(old, tuple) and isinstance(new, tuple) and len(old) == len(new):
        return [c for a, b in zip(old, new, strict=True) if a != b for c in changes(a, b, prefix)]
    return [_phrase(prefix or "value", old, new, None)]


def _leaf_or_deeper(a: Any, b: Any, path: str, info: FieldInfo) -> list[str]:
    if (
        a is not None
        and b is not None
        and (
            (type(a) is type(b) and isinstance(a, BaseModel))
            or (isinstance(a, Mapping) and isinstance(b, Mapping))
        )
    ):
        return changes(a, b, path)
    return [_phrase(path, a, b, info)]


def _phrase(path: str, a: Any, b: Any, info: FieldInfo | None) -> str:
    if isinstance(a, SecretStr) or isinstance(b, SecretStr):
        return f"{path} changed"
    return f"{path} {_show(a, info)} → {_show(b, info)}"


def _show(value: Any, info: FieldInfo | None) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float) and info is not None and _is_duration(info):
        text = format_duration(value)
    elif isinstance(value, str) and "://" in value:
        text = _where(value)
    elif isinstance(value, BaseModel):
        text = "{…}"
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"


def _is_duration(info: FieldInfo) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is setting_duration for m in info.metadata)


def _where(url: str) -> str:
    """Where a URL goes, without credentials, path or query."""
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
