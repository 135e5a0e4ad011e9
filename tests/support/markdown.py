"""Reading the repository's Markdown pages as the docs tests check them: fenced
blocks (with the HTML comment that marks one, if any), inline code, links, and
the anchors GitHub gives headings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_MARK = re.compile(r"^<!--\s*(.*?)\s*-->$")
_LINK = re.compile(r"(?<!!)\[(?:[^\]]|\][^(])*?\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"(`+)(.+?)\1")


@dataclass(frozen=True)
class Block:
    """A fenced block: its page, the line its text starts on, its language (the
    fence's info string), its text, and the mark (``<!-- … -->``) just above it."""

    page: str
    line: int
    lang: str
    text: str
    mark: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        previous = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        mark = _MARK.match(previous)
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        text = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(name(page), i + 2, lang, text, mark.group(1) if mark else None))
        i = end + 1
    return found


def prose(page: Path) -> list[tuple[int, str]]:
    """The page's lines outside fenced blocks, with their numbers."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.startswith(fence):
            fence = None
        elif fence is None:
            out.append((number, line))
    return out


def inline_code(page: Path) -> list[tuple[int, str]]:
    """Every inline code span outside fenced blocks, with its line number."""
    return [(n, m.group(2).strip()) for n, line in prose(page) for m in _CODE.finditer(line)]


def links(page: Path) -> list[tuple[int, str]]:
    """Every link and image target outside fenced blocks and inline code."""
    found = []
    for number, line in prose(page):
        bare = _CODE.sub("``", line)
        for match in _LINK.finditer(bare):
            found.append((number, match.group(1) or match.group(2)))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose(page):
        if not re.match(r"^#{1,6} ", line):
            continue
        base = slug(line.lstrip("#"))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out
