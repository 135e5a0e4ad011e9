"""The YAML file as a document, before any model sees it: which file (``-c`` or
``$OUTBOXD_CONFIG``), read (at most 1 MiB of UTF-8) and parsed strictly (no key
given twice; bounded in size once its aliases are expanded, and in depth), its
``x-`` keys dropped; and the URL of its database, ``${VAR}`` resolved, which a
dispatcher reads before it loads the settings models (``daemon.cli.run``: its store
worker is started for that database). Imports PyYAML, not pydantic; the settings
are validated from a document by ``daemon.config.loader``.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from daemon.config.errors import ConfigError, ConfigIssue
from daemon.config.interpolation import InterpolationError, interpolate

CONFIG_ENV = "OUTBOXD_CONFIG"
MAX_BYTES = 1 << 20  # a config file is at most 1 MiB
MAX_VALUES = 100_000  # values in the document once YAML aliases are expanded
MAX_DEPTH = 64  # mappings and lists nested in one another


def config_path(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """The file named by ``-c`` or else by ``$OUTBOXD_CONFIG``."""
    chosen = explicit or environ.get(CONFIG_ENV)
    if not chosen:
        raise ConfigError(
            "outboxd", [ConfigIssue("", f"no config file: pass -c FILE or set {CONFIG_ENV}")]
        )
    return Path(chosen)


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: where it came from (for errors) and its top-level
    mapping, as written (``${VAR}`` not yet resolved)."""

    source: str
    data: dict[str, Any]


def read_document(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Document:
    """The file named by ``path`` (or ``$OUTBOXD_CONFIG``), read and parsed; a file
    that cannot be read or parsed is a ``ConfigError`` saying why."""
    file = config_path(path, environ)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            str(file), [ConfigIssue("", f"cannot read: {exc.strerror or exc}")]
        ) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(str(file), [ConfigIssue("", f"larger than {MAX_BYTES >> 20} MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        issue = ConfigIssue("", f"not UTF-8 text (byte {exc.start}: {exc.reason})")
        raise ConfigError(str(file), [issue]) from None
    return Document(str(file), parse_yaml(text, str(file)))


def database_url(document: Document, environ: Mapping[str, str]) -> str | None:
    """The URL ``database:`` gives (alone, or as ``url:``), its ``${VAR}`` resolved;
    None where it gives none that can be read yet (validating the settings then
    says what is wrong)."""
    value = document.data.get("database")
    if isinstance(value, dict):
        value = value.get("url")
    if not isinstance(value, str):
        return None
    try:
        return interpolate(value, environ)
    except InterpolationError:
        return None


# --- YAML ---------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping. Merge keys
    (``<<: *defaults``) are taken: the mapping's own keys win over merged ones."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self._outboxd_mark = node.start_mark  # where a constructor that fails was
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given at line {seen[key]})",
                    key_node.start_mark,
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _bounded(root: yaml.Node) -> str | None:
    """Why a document is too big once its aliases are expanded, or nested too
    deeply, or None. Walks the node graph (aliases are shared nodes) without
    expanding it, stopping as soon as a limit is passed."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    values = 0
    while stack:
        node, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            return f"more than {MAX_VALUES:,} values once its aliases are expanded"
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(node, yaml.MappingNode):
            stack += [(n, depth + 1) for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(n, depth + 1) for n in node.value]
    return None


def _where_constructing(loader: yaml.SafeLoader | None) -> str:
    mark = getattr(loader, "_outboxd_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _too_deep(text: str) -> bool:
    """Whether collections nest more than ``MAX_DEPTH`` deep, read from the parser's
    events (composing such a document would recurse past Python's limit)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return False


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The top-level mapping of a YAML text, ``x-`` keys dropped; a ``ConfigError``
    naming the line and column of what cannot be parsed."""
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)
        if _too_deep(text):
            raise ConfigError(
                source, [ConfigIssue("", f"the YAML is nested more than {MAX_DEPTH} levels deep")]
            )
        node = loader.get_single_node()
        too_big = _bounded(node) if node is not None else None
        if too_big is not None:
            raise ConfigError(source, [ConfigIssue("", f"the YAML is {too_big}")])
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {where}{problem}")]) from None
    except RecursionError:
        issue = ConfigIssue("", f"the YAML is nested more than {MAX_DEPTH} levels deep")
        raise ConfigError(source, [issue]) from None
    except ValueError as exc:  # a value the constructors cannot take (a 5,000-digit number)
        where = _where_constructing(loader)
        issue = ConfigIssue("", f"invalid YAML: {where}{' '.join(str(exc).split()[:6])}")
        raise ConfigError(source, [issue]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise ConfigError(source, [ConfigIssue("", "the file is empty")])
    if not isinstance(data, dict):
        raise ConfigError(
            source, [ConfigIssue("", f"expected a mapping at the top, got {type(data).__name__}")]
        )
    # top-level keys starting with "x-" are the file's own (a place for YAML anchors)
    return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
