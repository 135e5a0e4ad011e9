"""README.md is the front door: short, its two commands are the Makefile's, and it
links every page of the reference. Its examples are checked with every page's, in
test_docs.py."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_under_250_lines():
    assert len(README.splitlines()) < 250


def test_its_two_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_it_links_every_page_of_the_reference():
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", README))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"not linked from README.md: {sorted(pages - linked)}"
