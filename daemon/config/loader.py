"""Load the YAML file: parse (``daemon.config.document``), interpolate ``${VAR}``,
validate, cross-check.

Every problem is reported with its dotted path in the file
(``channels.malaffi.rate: …``); all of them at once, not the first only.
"""

from __future__ import annotations

import ipaddress
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from daemon.config.document import MAX_DEPTH as MAX_DEPTH  # re-exported: nesting limit
from daemon.config.document import Document, parse_yaml, read_document
from daemon.config.errors import ConfigError, ConfigIssue
from daemon.config.interpolation import InterpolationError, interpolate, names_variable
from daemon.config.settings import (
    DEFAULT_BASE_PORTS,
    HolidaySettings,
    Settings,
    every_kind,
    knows_every_kind,
    model_for,
    schedule_model,
)
from daemon.domain.fields import FromEnvironment
from daemon.domain.kinds import KindUnavailable
from daemon.jobs.registry import JOB_KINDS
from daemon.sources.registry import SOURCE_KINDS


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    return settings_of(read_document(path, env), env)


def parse_config(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Settings:
    return settings_of(Document(source, parse_yaml(text, source)), environ)


def settings_of(document: Document, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings a parsed file gives; every problem at once, each with its dotted
    path, in a ``ConfigError``."""
    env = os.environ if environ is None else environ
    source, raw = document.source, document.data
    issues: list[ConfigIssue] = []
    data = _interpolate_tree(raw, env, (), issues)
    failed = {issue.path for issue in issues}
    settings = None
    try:
        try:
            settings = _validate(data)
        except ValidationError as exc:
            issues += [i for i in _issues_from_pydantic(exc.errors(), data) if i.path not in failed]
        issues += cross_check(data)
    except KindUnavailable as exc:  # a kind the file names, or the model of every kind
        issues.append(ConfigIssue("", f"{exc} (reinstall outboxd)"))
        settings = None
    if settings is not None:
        issues += secrets_written_out(settings, raw)
    if issues or settings is None:
        raise ConfigError(source, issues)
    return settings


def _validate(data: Any) -> Settings:
    """The settings of the interpolated file, validated by the model of the kinds it
    names; where that fails, by the model of every kind, whose verdict is the same
    (a kind's settings are picked by their tag) and whose errors name every kind.
    Where a kind cannot be loaded (a broken install), the errors of the file's own
    kinds' model are told instead, or ``KindUnavailable``."""
    model = model_for(data) if isinstance(data, Mapping) else every_kind()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        if knows_every_kind(model):
            raise
        narrowed = exc
    try:
        full = every_kind()
    except KindUnavailable:
        raise narrowed from None
    return full.model_validate(data)


# --- interpolation ------------------------------------------------------------


def _interpolate_tree(
    node: Any, environ: Mapping[str, str], path: tuple[Any, ...], issues: list[ConfigIssue]
) -> Any:
    if isinstance(node, str):
        try:
            return interpolate(node, environ)
        except InterpolationError as exc:
            issues.append(ConfigIssue(format_path(path), str(exc)))
            return node
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, environ, (*path, k), issues) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, environ, (*path, i), issues) for i, v in enumerate(node)]
    return node


# --- secrets only by ${VAR} ----------------------------------------------------------

WRITTEN_OUT = "a secret is not written in the file: give it as ${VAR} (an environment variable)"


def secrets_written_out(value: Any, raw: Any, path: tuple[Any, ...] = ()) -> list[ConfigIssue]:
    """The settings marked ``FromEnvironment`` whose value the file (``raw``, as
    written, before ``${VAR}`` was resolved) holds itself instead of naming a variable."""
    if isinstance(value, BaseModel):
        issues = []
        for name, field in type(value).model_fields.items():
            key = field.alias or name
            node = raw.get(key) if isinstance(raw, dict) else None
            found = getattr(value, name)
            if any(isinstance(m, FromEnvironment) for m in field.metadata):
                if found is not None and not (isinstance(node, str) and names_variable(node)):
                    issues.append(ConfigIssue(format_path((*path, key)), WRITTEN_OUT))
                continue
            issues += secrets_written_out(found, node, (*path, key))
        return issues
    if isinstance(value, Mapping):
        return [
            issue
            for key, item in value.items()
            for issue in secrets_written_out(
                item, raw.get(key) if isinstance(raw, dict) else None, (*path, key)
            )
        ]
    if isinstance(value, list | tuple):
        return [
            issue
            for i, item in enumerate(value)
            for issue in secrets_written_out(
                item, raw[i] if isinstance(raw, list) and i < len(raw) else None, (*path, i)
            )
        ]
    return []


# --- pydantic errors → dotted paths ---------------------------------------------


def format_path(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _present(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


# What pydantic puts in an error's location besides the file's keys: the member
# of a union it tried ("str", "dict[str,any]", "HttpSettings") or a validator.
_MEMBERS = {
    "str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
    "none": "nothing", "list": "a list", "dict": "a mapping", "tuple": "a list",
}  # fmt: skip


def _member(part: Any) -> str | None:
    """What a location part that is a union member stands for, or None for a key."""
    if not isinstance(part, str):
        return None
    base = part.split("[", 1)[0]
    if base in _MEMBERS:
        return _MEMBERS[base]
    if part.startswith(("function-", "json-or-python", "lax-or-strict", "chain")):
        return ""
    if part[:1].isupper() and part.isidentifier():  # a model's name
        return "a mapping"
    return None


def _real_path(loc: tuple[Any, ...], data: Any) -> tuple[list[Any], str | None]:
    """The parts of a pydantic location that are in the file, and the union member
    the error is about (if any). Union tags and validators are dropped; where the
    file has nothing (a missing key, or a section left to its defaults), the rest
    of the location is the path."""
    parts: list[Any] = []
    member: str | None = None
    node = data
    for part in loc:
        if part == "[key]":
            continue
        if node is not None and _present(node, part):
            parts.append(part)
            node = node[part]
            continue
        if isinstance(node, dict) and part in (node.get("kind"), node.get("job"), node.get("type")):
            continue  # a union's tag
        what = _member(part)
        if what is not None:
            member = what or member
            continue
        parts.append(part)
        node = None
    return parts, member


def _issues_from_pydantic(errors: list[Any], data: Any, strip: int = 0) -> list[ConfigIssue]:
    """One issue per place: the errors of a union's members at one path (a value
    that is none of them) become one, saying what it may be."""
    issues: list[ConfigIssue] = []
    members: dict[str, list[str]] = {}
    inputs: dict[str, Any] = {}
    for error in errors:
        parts, member = _real_path(tuple(error["loc"]), data)
        issue = _issue_from_pydantic(error, data, parts, strip)
        if member and error["loc"][-1:] != ("[key]",) and error["type"] != "extra_forbidden":
            if issue.path not in members:
                issues.append(issue)
                inputs[issue.path] = error.get("input")
            if member not in members.setdefault(issue.path, []):
                members[issue.path].append(member)
            continue
        issues.append(issue)
    out = []
    for issue in issues:
        kinds = members.get(issue.path, [])
        if len(kinds) > 1:
            given = type(inputs[issue.path]).__name__
            issue = ConfigIssue(issue.path, f"expected {' or '.join(kinds)}, got {given}")
        out.append(issue)
    return out


def _issue_from_pydantic(error: Any, data: Any, parts: list[Any], strip: int = 0) -> ConfigIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    message = error["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(parts[:-1], data)
        message = "unknown key"
        import difflib  # a file with an unknown key only

        close = difflib.get_close_matches(str(parts[-1]), allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif allowed:
            message += f" (expected one of: {', '.join(sorted(allowed))})"
    elif kind == "missing":
        message = "required key is missing"
        needs = [  # a job's options: which of them must be given
            name
            for model in (_models_at(parts, data)[:1] if parts[-1:] == ["options"] else [])
            for name, field in model.model_fields.items()
            if field.is_required() and name not in ("kind", "job")
        ]
        if needs:
            message += f" (with {', '.join(needs)})"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_name = str(error.get("ctx", {}).get("discriminator", "kind")).strip("'")
        if kind == "union_tag_not_found" and parts and parts[-1] == tag_name:
            parts = parts[:-1]
        tags = error.get("ctx", {}).get("expected_tags") or ", ".join(
            repr(t) for t in _tags_at(parts, data)
        )
        parts = [*parts, tag_name]
        message = (
            f"unknown {tag_name} {error['ctx'].get('tag')!r}; expected one of {tags}"
            if kind == "union_tag_invalid"
            else f"required key is missing (one of {tags})"
        )
    elif loc and loc[-1] == "[key]":
        message = (
            f"invalid name {loc[-2]!r}: use letters, digits, '_', '-', '.', starting with a letter"
        )
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    elif kind == "model_type" or kind == "dict_type":
        message = f"expected a mapping, got {type(error.get('input')).__name__}"
    return ConfigIssue(format_path(parts[strip:]), message)


def problems_at(exc: ValidationError, data: Any, at: tuple[str, ...]) -> list[ConfigIssue]:
    """The problems of ``data`` validated alone as the file's node at ``at`` (a
    schedule given on the command line is ``("schedules", NAME)``), in the words
    and paths a check of the file would use, the paths relative to that node."""
    root: Any = data
    for part in reversed(at):
        root = {part: root}
    errors = [{**e, "loc": (*at, *e["loc"])} for e in exc.errors()]
    return _issues_from_pydantic(errors, root, strip=len(at))


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation can hold (through Optional, Annotated, dict)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _unwrap(arg)]
    if origin is dict:
        return [("dict", typing.get_args(annotation)[1])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _tags_at(parts: list[Any], data: Any) -> list[str]:
    """The tags (``kind`` or ``job``) the union at ``parts`` takes."""
    return [t for m in _models_at(parts, data) if (t := _kind_of(m)) is not None]


def _allowed_keys(parts: list[Any], data: Any) -> list[str]:
    """The keys the settings accept at ``parts``, found by walking the models (a
    union narrowed by the node's ``kind`` or ``job`` on the way)."""
    node: Any = data
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    models = [c for c in _tagged(_models_at(parts, data), node) if not isinstance(c, tuple)]
    return list(models[0].model_fields) if models else []


def _root_model(data: Any) -> type[Settings]:
    """The model an error's path is walked in: every kind's, or where a kind cannot
    be loaded, the one of the kinds the file names."""
    try:
        return every_kind()
    except KindUnavailable:
        return model_for(data) if isinstance(data, Mapping) else Settings


def _models_at(parts: list[Any], data: Any) -> list[Any]:
    candidates: list[Any] = [_root_model(data)]
    node = data
    for part in parts:
        candidates = _tagged(candidates, node)
        node = node.get(part) if isinstance(node, dict) else None
        nxt: list[Any] = []
        for cand in candidates:
            if isinstance(cand, tuple):  # a dict: every key holds the value type
                nxt += _unwrap(cand[1])
            elif part in cand.model_fields:
                nxt += _unwrap(cand.model_fields[part].annotation)
        candidates = nxt
    return [c for c in candidates if not isinstance(c, tuple)]


def _tagged(candidates: list[Any], node: Any) -> list[Any]:
    """The models of a union that the node's tag (``kind`` or ``job``) picks, or all."""
    tag = (node.get("kind") or node.get("job")) if isinstance(node, dict) else None
    models = [c for c in candidates if not isinstance(c, tuple)]
    picked = [m for m in models if tag is not None and _kind_of(m) == tag]
    return picked if picked else candidates


def _kind_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind") or model.model_fields.get("job")
    args = typing.get_args(field.annotation) if field else ()
    return args[0] if args else None


# --- cross-references -----------------------------------------------------------


def _section(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def cross_check(data: Mapping[str, Any]) -> list[ConfigIssue]:
    """Checks between sections, on the interpolated document (so they run even
    when a section has errors of its own, and every problem is told at once)."""
    issues: list[ConfigIssue] = []
    channels = _section(data, "channels")
    for name, source in _section(data, "sources").items():
        channel = source.get("channel") if isinstance(source, dict) else None
        if isinstance(channel, str) and channel not in channels:
            known = ", ".join(sorted(map(str, channels))) or "none defined"
            issues.append(
                ConfigIssue(
                    f"sources.{name}.channel", f"no channel named {channel!r} (channels: {known})"
                )
            )
        elif (
            isinstance(channel, str)
            and isinstance(source.get("kind"), str)
            and (source["kind"] in SOURCE_KINDS)
        ):
            wanted = SOURCE_KINDS[source["kind"]].channel_kinds
            target = channels[channel]
            kind = target.get("kind") if isinstance(target, dict) else None
            if kind not in wanted:
                issues.append(
                    ConfigIssue(
                        f"sources.{name}.channel",
                        f"a {source['kind']} source sends to a {' or '.join(wanted)} channel; "
                        f"{channel!r} is {kind!r}",
                    )
                )
    issues += _check_schedules(data)
    issues += _check_alerts(data)
    issues += _check_control(data)
    issues += _check_webhooks(data)
    ports: dict[int, str] = {}
    control_port = _port(_section(data, "control").get("port", 8080))
    if control_port is not None:
        ports[control_port] = "control.port"
    roles = _section(data, "roles")
    for role, default in DEFAULT_BASE_PORTS.items():
        given = roles.get(role)
        raw = given.get("base_port") if isinstance(given, dict) else None
        port = _port(raw if raw is not None else default)
        if port is None:
            continue  # not a port: the field's own check says so
        path = f"roles.{role}.base_port"
        if port in ports:
            issues.append(ConfigIssue(path, f"port {port} is already used by {ports[port]}"))
        ports.setdefault(port, path)
    return issues


def _check_schedules(data: Mapping[str, Any]) -> list[ConfigIssue]:
    return [
        ConfigIssue(f"schedules.{name}.{issue.path}", issue.message)
        for name, schedule in _section(data, "schedules").items()
        if isinstance(schedule, dict)
        for issue in schedule_problems(schedule, data)
    ]


def schedule_problems(
    schedule: Mapping[str, Any], document: Mapping[str, Any]
) -> list[ConfigIssue]:
    """What a schedule names that the file does not have (a notify target, a
    channel, a source, a holiday calendar); paths relative to the schedule. The
    file's schedules are checked with it, and those given on the command line."""
    issues: list[ConfigIssue] = []
    job = schedule.get("job")
    options = schedule.get("options")
    if isinstance(job, str) and job in JOB_KINDS and isinstance(options, dict):
        for path, problem in JOB_KINDS[job].check(options, document):
            issues.append(ConfigIssue(f"options.{path}", problem))
    skip = schedule.get("skip")
    wants_calendar = isinstance(skip, list) and "holidays" in skip
    if wants_calendar and schedule.get("holidays") is None and document.get("holidays") is None:
        issues.append(
            ConfigIssue(
                "skip",
                "holidays needs a calendar: holidays: {country: …} in the schedule or "
                "at the top of the file",
            )
        )
    issues += _window_problems(schedule, document)
    return issues


def _window_problems(schedule: Mapping[str, Any], document: Mapping[str, Any]) -> list[ConfigIssue]:
    """A schedule with ``start_at`` and ``end_at`` must have a fire between them
    (read in its zone, or the file's ``timezone``)."""
    job = schedule.get("job")
    if schedule.get("start_at") is None or schedule.get("end_at") is None:
        return []
    if not isinstance(job, str) or job not in JOB_KINDS:
        return []
    from daemon.config.timing import timing_for
    from daemon.scheduling.fires import JUST_BEFORE, next_fires

    model = schedule_model(job)
    zone = document.get("timezone")
    calendar = document.get("holidays")
    try:
        spec = model.model_validate(schedule)
        if isinstance(calendar, dict):
            calendar = HolidaySettings.model_validate(calendar)
        timing = timing_for(
            spec,
            zone if isinstance(zone, str) else "UTC",
            calendar if isinstance(calendar, HolidaySettings) else None,
        )
    except (ValidationError, ValueError, KeyError):  # their own checks say what is wrong
        return []
    start, end = timing.start, timing.end
    if start is None or end is None:
        return []
    if end <= start:
        return [ConfigIssue("end_at", f"{end.isoformat()} is not later than start_at "
                                      f"({start.isoformat()})")]  # fmt: skip
    try:
        found = next_fires(timing, start - JUST_BEFORE)
    except OverflowError:
        found = []
    if not found:
        return [
            ConfigIssue(
                "end_at",
                f"the schedule never fires from start_at ({start.isoformat()}) to end_at "
                f"({end.isoformat()})",
            )
        ]
    return []


def _check_alerts(data: Mapping[str, Any]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    targets = _section(data, "notify")
    alerts = data.get("alerts")
    for i, alert in enumerate(alerts if isinstance(alerts, list) else []):
        if not isinstance(alert, dict):
            continue
        names = alert.get("notify")
        for j, target in enumerate(names if isinstance(names, list) else []):
            if isinstance(target, str) and target not in targets:
                known = ", ".join(sorted(map(str, targets))) or "none defined"
                issues.append(
                    ConfigIssue(
                        f"alerts[{i}].notify[{j}]", f"no notify target {target!r} ({known})"
                    )
                )
        for field, section in (("schedule", "schedules"), ("channel", "channels")):
            named = alert.get(field)
            if isinstance(named, str) and named not in _section(data, section):
                issues.append(ConfigIssue(f"alerts[{i}].{field}", f"no {field} named {named!r}"))
    return issues


def is_loopback(host: str) -> bool:
    """Whether a host is this machine only: ``localhost``, 127.0.0.0/8, ``::1``."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_control(data: Mapping[str, Any]) -> list[ConfigIssue]:
    control = _section(data, "control")
    host = control.get("host", "127.0.0.1")
    tokens = control.get("tokens")
    if isinstance(host, str) and host and not is_loopback(host) and not tokens:
        return [
            ConfigIssue(
                "control.host",
                f"{host!r} is reachable from other machines: give control.tokens (outboxd "
                "token new makes one), or listen on 127.0.0.1",
            )
        ]
    return []


def _check_webhooks(data: Mapping[str, Any]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    channels = _section(data, "channels")
    for name, webhook in _section(data, "webhooks").items():
        channel = webhook.get("channel") if isinstance(webhook, dict) else None
        if isinstance(channel, str) and channel not in channels:
            known = ", ".join(sorted(map(str, channels))) or "none defined"
            issues.append(
                ConfigIssue(
                    f"webhooks.{name}.channel", f"no channel named {channel!r} (channels: {known})"
                )
            )
    return issues


def _port(value: Any) -> int | None:
    """A port number as given (an int, or its text), else None."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 5:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
