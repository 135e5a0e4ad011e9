"""README.md and docs/*.md hold no example the code refuses.

- Every ```yaml block is read by the real loader (``parse_config``): a whole
  file, or — marked ``<!-- yaml: fragment -->`` — sections of one (a database
  line is added), or — ``<!-- yaml: fragment at channels.NAME -->`` — the
  mapping at that path. Another program's file is marked ``<!-- yaml: not
  outboxd … -->`` and need only be YAML. One marked ``<!-- yaml: refused -->``
  must be refused with the words of the ```text block after it.
- Every ``outboxd …`` command in a shell block (``sh``; in another block, the
  lines after ``$ ``) is parsed by the real command-line parser: an unknown
  command or option fails. Inline ``outboxd …`` code and the first column of a
  table headed ``command`` are synopses: their commands and options must exist.
- Every link between pages resolves, to a file and to a heading.
- Every path of the repository a page names in code exists.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from daemon.channels.kind import ChannelSettings
from daemon.cli.parser import build_parser
from daemon.config.errors import ConfigError
from daemon.config.loader import parse_config
from daemon.config.settings import ControlSettings, RoleSettings, Settings
from tests.support import markdown
from tests.support.markdown import ROOT, Block

PAGES = markdown.pages()
BLOCKS = [b for page in PAGES for b in markdown.blocks(page)]
YAML = [b for b in BLOCKS if b.lang == "yaml"]

# values of the right shape for the variables whose shape is checked
SAMPLES = {
    "OPS_WEBHOOK_SECRET": "whsec_c2FtcGxlLXNlY3JldA==",
    "FILING_WEBHOOK_SECRET": "whsec_bmV3LXNlY3JldA==",
    "FILING_WEBHOOK_SECRET_OLD": "whsec_b2xkLXNlY3JldA==",
    "OUTBOXD_CONTROL_PORT": "8080",
}
DATABASE = "database: sqlite:///unused.db\n"
# Pages other work adds; a link to one is checked once it is there.
ELSEWHERE = {"docs/deploy.md"}
ANCHORS_ELSEWHERE = {("docs/benchmarks.md", "start-up")}


def environ(text: str) -> dict[str, str]:
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    return {n: SAMPLES.get(n, "x-value") for n in names}


def load(block: Block) -> None:
    mark = block.mark or ""
    if mark == "yaml: refused":
        refused(block)
        return
    if not mark.startswith("yaml:"):
        text = block.text
    elif mark.startswith("yaml: not outboxd"):
        yaml.safe_load(block.text)
        return
    elif (at := re.fullmatch(r"yaml: fragment at ([\w.-]+)", mark)) is not None:
        parts = at.group(1).split(".")
        body = "\n".join(" " * 2 * len(parts) + line for line in block.text.splitlines())
        heads = "".join(" " * 2 * i + f"{part}:\n" for i, part in enumerate(parts))
        text = DATABASE + heads + body + "\n"
    elif mark == "yaml: fragment":
        text = DATABASE + block.text
    else:
        raise AssertionError(f"{block.where}: unknown mark <!-- {mark} -->")
    if not mark.startswith("yaml:") and not re.search(r"^database:", text, re.M):
        raise AssertionError(
            f"{block.where}: a YAML block with no database: mark it <!-- yaml: fragment --> "
            "(sections of the file), <!-- yaml: fragment at PATH --> or <!-- yaml: not "
            "outboxd (what it is) --> (another program's file)"
        )
    parse_config(text, source=block.where, environ=environ(text))


def refused(block: Block) -> None:
    """A file the page shows refused: the loader, with no variable set, says what
    the ```text block after it says, word for word."""
    page = [b for b in BLOCKS if b.page == block.page]
    said = page[page.index(block) + 1]
    assert said.lang == "text", f"{block.where}: a refused file is followed by what is said"
    with pytest.raises(ConfigError) as refusal:
        parse_config(block.text, source="outboxd.yaml", environ={})
    assert str(refusal.value) == said.text.strip()


def test_the_pages_have_yaml_examples():
    assert len(YAML) >= 10


@pytest.mark.parametrize("block", YAML, ids=[b.where for b in YAML])
def test_a_yaml_example_is_what_the_loader_takes(block: Block):
    load(block)


# --- commands -------------------------------------------------------------------

PARSER = build_parser()
_PROGRAM = re.compile(r"(?:\S*/)?(?:outboxd|python3? -m daemon)\s+")
_COMMAND = re.compile(r"(?:[A-Z_][A-Z0-9_]*=\S*\s+)*" + _PROGRAM.pattern + "(.*)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps them here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_lines(block: Block) -> list[str]:
    """The ``outboxd`` commands of a block: each line of a shell block, the lines
    after ``$ `` in another; continuation lines joined."""
    if block.lang not in ("sh", "shell", "bash", "console", "", "text"):
        return []
    shell = block.lang in ("sh", "shell", "bash")
    joined = block.text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        text = line.strip()
        if not shell:
            if not text.startswith("$ "):
                continue
            text = text[2:]
        for part in re.split(r"\s(?:\||;|&&|\|\||>|2>|<)\s", text):
            match = _COMMAND.match(part.strip())
            if match:
                found.append(match.group(1))
    return found


def parse(words: list[str]) -> str | None:
    """None when the parser takes the command line, else what it said."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            PARSER.parse_args(words)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1]
    return None


def synopsis_problem(text: str) -> str | None:
    """What in a synopsis (``retry --id ID[,ID…] | FILTER [--dry-run]``) names a
    command or an option that is not there."""
    words = re.findall(r"-{1,2}[A-Za-z][\w-]*|[\w-]+", text)
    parser = PARSER
    path = []
    for word in words:
        choices = _subparsers(parser)
        if word in choices:
            parser = choices[word]
            path.append(word)
        elif word.startswith("-"):
            if word not in parser._option_string_actions:
                return f"outboxd {' '.join(path)}: no option {word}"
        elif not path:
            return f"no command {word!r}"
    return None


_SUBSTITUTION = re.compile(r"\$\([^)]*\)")
# configuration files a page's own steps write (docs/backup.md: a copy of the
# configuration pointed at a restored database); its test writes and uses them
WRITTEN_BY_A_PAGE = {"config/inspect.yaml", "config/restored.yaml"}

SHELL = [(b, line) for b in BLOCKS for line in command_lines(b)]


def test_the_pages_have_commands():
    assert len(SHELL) >= 20


@pytest.mark.parametrize(
    ("block", "line"), SHELL, ids=[f"{b.where}:{line[:40]}" for b, line in SHELL]
)
def test_a_command_is_one_the_parser_takes(block: Block, line: str):
    # a shell substitution (`$(date +%F)`) is one word to the program
    words = shlex.split(_SUBSTITUTION.sub("SUBSTITUTED", line), comments=True)
    problem = parse(words)
    assert problem is None, f"{block.where}: outboxd {line}: {problem}"
    if "-c" in words:
        config = words[words.index("-c") + 1]
        if config.startswith("config/") and config not in WRITTEN_BY_A_PAGE:
            assert (ROOT / config).is_file(), f"{block.where}: no file {config}"


def synopses(page: Path) -> list[tuple[int, str]]:
    found = []
    for number, code in markdown.inline_code(page):
        match = _PROGRAM.match(code)
        if match:
            found.append((number, code[match.end() :]))
    header: list[str] = []
    for number, line in markdown.prose(page):
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not header:
            header = cells
        elif header[0] == "command" and not set(line) <= set("|-: "):
            code = re.match(r"`([^`]+)`", cells[0])
            if code:
                found.append((number, code.group(1)))
    return found


SYNOPSES = [(markdown.name(p), n, s) for p in PAGES for n, s in synopses(p)]


@pytest.mark.parametrize(("page", "number", "text"), SYNOPSES,
                         ids=[f"{p}:{n}:{s[:30]}" for p, n, s in SYNOPSES])  # fmt: skip
def test_a_synopsis_names_commands_and_options_there_are(page: str, number: int, text: str):
    problem = synopsis_problem(text)
    assert problem is None, f"{page}:{number}: `{text}`: {problem}"


def test_a_wrong_option_is_caught():
    assert synopsis_problem("retry --channel C --dry-runn") is not None
    assert synopsis_problem("tokens new") is not None
    assert parse(["messages", "lst"]) is not None
    assert parse(["status", "--wait", "60"]) is None


# --- links and paths ----------------------------------------------------------------

LINKS = [(p, n, t) for p in PAGES for n, t in markdown.links(p)]


@pytest.mark.parametrize(("page", "number", "target"), LINKS,
                         ids=[f"{markdown.name(p)}:{n}:{t}" for p, n, t in LINKS])  # fmt: skip
def test_a_link_resolves(page: Path, number: int, target: str):
    if re.match(r"[a-z]+:", target):
        return  # another site
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    shown = file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else str(file)
    where = f"{markdown.name(page)}:{number}: {target}"
    if not file.exists():
        assert shown in ELSEWHERE, f"{where}: no such file"
        return
    if anchor and file.suffix == ".md" and (shown, anchor) not in ANCHORS_ELSEWHERE:
        assert anchor in markdown.anchors(file), f"{where}: no heading #{anchor} in {shown}"


_REPO_PATH = re.compile(r"(?:daemon|ops|config|tests|docs|\.ci)/[\w./-]*")


def test_the_paths_named_are_there():
    missing = [
        f"{markdown.name(page)}:{number}: {code}"
        for page in PAGES
        for number, code in markdown.inline_code(page)
        if _REPO_PATH.fullmatch(code)
        and code not in WRITTEN_BY_A_PAGE
        and not (ROOT / code.rstrip("/")).exists()
    ]
    assert not missing, missing


# --- the reference tables against the code ----------------------------------------


def _first_cells(page: str, header: str) -> list[str]:
    """The first column of every table of ``page`` whose first header cell is ``header``."""
    cells: list[str] = []
    heading: list[str] = []
    for _, line in markdown.prose(ROOT / page):
        if not line.startswith("|"):
            heading = []
            continue
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if not heading:
            heading = row
        elif heading[0] == header and not set(line) <= set("|-: "):
            cells.append(row[0])
    return cells


def test_the_api_page_lists_every_endpoint_there_is():
    from daemon.api.app import ENDPOINTS

    listed = set()
    for cell in _first_cells("docs/api.md", "method and path"):
        first = re.match(r"`([A-Z]+) (\S+)`", cell)
        assert first, cell
        method, path = first.groups()
        listed.add((method, path))
        for extra in re.findall(r"`(/\w+)`", cell):  # `/cancel`, `/resend` beside the first
            listed.add((method, path.rsplit("/", 1)[0] + extra))
    there = {(e.method, e.path) for e in ENDPOINTS if e.path != "/api/v1/openapi.json"}
    assert listed == there, (sorted(there - listed), sorted(listed - there))


def _has(model: type[BaseModel], dotted: str) -> bool:
    """Whether the settings model takes the dotted key (``retry.max_attempts``); a
    ``NAME`` or ``ROLE`` part stands for any key of a mapping or any role."""
    head, _, rest = dotted.partition(".")
    if head not in model.model_fields:
        return False
    if not rest or rest.split(".")[0] in ("NAME", "ROLE"):
        return True
    inner = [
        a
        for a in (
            model.model_fields[head].annotation,
            *typing.get_args(model.model_fields[head].annotation),
        )
        if isinstance(a, type) and issubclass(a, BaseModel)
    ]
    return any(_has(m, rest) for m in inner)


def _keys(cell: str) -> list[str]:
    return [k for k in re.findall(r"`([\w.]+)`", cell)]


# the tables of docs/configuration.md (by the heading above them) and the models they describe
TABLES = {
    "the-top-level": Settings,
    "every-channel": ChannelSettings,
    "roles": RoleSettings,
    "control": ControlSettings,
}


def test_the_configuration_page_names_keys_the_models_take():
    page = ROOT / "docs" / "configuration.md"
    section = ""
    heading: list[str] = []
    checked = 0
    for _, line in markdown.prose(page):
        if re.match(r"^#{2,3} ", line):
            section = markdown.slug(line.lstrip("#"))
        if not line.startswith("|"):
            heading = []
            continue
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if not heading:
            heading = row
            continue
        if heading[0] != "key" or set(line) <= set("|-: ") or section not in TABLES:
            continue
        for key in _keys(row[0]):
            if key.startswith("x-"):
                continue
            assert _has(TABLES[section], key), f"docs/configuration.md #{section}: no key {key}"
            checked += 1
    assert checked >= 30
