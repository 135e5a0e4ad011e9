"""docs/tour.md, run as a reader runs it: the demo suite started as `make run`
starts it (a copy of supervisord.conf and config/ in a directory of its own, its
ports moved; tests/e2e/test_suite.py's ``Suite``), then every command of the
page in order, each block's output checked against the "what you see" block
after it.

How a "what you see" block is read: each of its lines must match a line of the
output, in order (lines in between are allowed); ``…`` matches anything, runs of
spaces match any run of spaces; ``ID`` and ``KODEBOOKING`` capture the id or
booking code the output shows, which the next commands use (a block whose
commands name one matches it as captured). The demo's default ports are read as
the copy's. A block whose commands only look (listings, ``grep``) is run again
until what it shows matches, as a reader would look again a little later; one
that changes something runs once.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_suite import VENV, Suite, _root, _venv_problem
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TOUR = Path(__file__).resolve().parents[2] / "docs" / "tour.md"
PLACEHOLDERS = {"ID": r"\d+", "KODEBOOKING": r"\d+"}
LOOKS = re.compile(
    r"^(\.venv/bin/outboxd (status|stats|audit|runs|visits?|messages (list|show))"
    r"|\.venv/bin/python -m daemon\.sim\.mail (list|show)|grep)( |$)"
)
LOOK_AGAIN_FOR = 120.0  # seconds: a visit's steps take a minute of the hospital's day
LOOK_EVERY = 1.0  # seconds between two looks: each runs the block's commands again


@dataclass
class Step:
    commands: list[str]
    expected: list[str]

    @property
    def looks_only(self) -> bool:
        return all(LOOKS.match(c) for c in self.commands)


def steps(text: str) -> list[Step]:
    """Each ```sh block with the ```text block after it (if one comes before the next
    ```sh block)."""
    blocks = re.findall(r"```(sh|text)\n(.*?)```", text, re.S)
    out: list[Step] = []
    for kind, body in blocks:
        lines = [line for line in body.splitlines() if line.strip()]
        if kind == "sh":
            out.append(Step(lines, []))
        else:
            assert out and not out[-1].expected, f"a text block with no command before it: {body}"
            out[-1].expected = lines
    return out


def pattern(line: str, known: dict[str, str], capture: bool, ports: dict[str, str]) -> str:
    """The regular expression of one line of a "what you see" block."""
    for default, port in ports.items():
        line = line.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")
    out = []
    seen: set[str] = set()
    for token in re.split(r"(…|\s+|\b(?:" + "|".join(PLACEHOLDERS) + r")\b)", line.strip()):
        if not token:
            continue
        if token == "…":
            out.append(".*?")
        elif token.isspace():
            out.append(r"\s+")
        elif token in PLACEHOLDERS:
            if capture and token not in seen:
                out.append(f"(?P<{token}>{PLACEHOLDERS[token]})")
            else:
                out.append(f"(?P={token})" if capture else re.escape(known[token]))
            seen.add(token)
        else:
            out.append(re.escape(token))
    return "".join(out)


def match(
    output: str, expected: list[str], known: dict[str, str], capture: set[str], ports: dict
) -> dict[str, str] | None:
    """What the placeholders captured, when every expected line matches a line of the
    output in order; None when one does not."""
    lines = [line.strip() for line in output.splitlines()]
    found: dict[str, str] = {}
    at = 0
    for want in expected:
        names = {n for n in PLACEHOLDERS if re.search(rf"\b{n}\b", want)}
        regex = re.compile(pattern(want, known | found, bool(names & capture - found.keys()),
                                   ports))  # fmt: skip
        for i in range(at, len(lines)):
            hit = regex.fullmatch(lines[i])
            if hit is not None:
                found |= {k: v for k, v in hit.groupdict().items() if v is not None}
                at = i + 1
                break
        else:
            return None
    return found


@pytest.fixture
async def suite(tmp_path: Path) -> AsyncIterator[Suite]:
    problem = _venv_problem()
    if problem:
        pytest.skip(problem)
    root = _root(tmp_path)
    s = Suite(root, VENV)
    try:
        yield s
    finally:
        await s.shutdown()
        if not root.is_relative_to(tmp_path):
            shutil.rmtree(root.parent, ignore_errors=True)


def test_the_tour_is_read_as_the_test_reads_it():
    tour = steps(TOUR.read_text())
    assert tour[0].commands == ["make run"]
    assert len(tour) >= 15
    every = [c for step in tour for c in step.commands]
    for needed in ("enqueue", "--mrn", "daemon.sim.fail 50%", "daemon.sim.fail off", "retry",
                   "schedules run", "daemon.sim.mail show", "visit", "signal HUP"):  # fmt: skip
        assert any(needed in c for c in every), needed
    ports = {"2575": "1"}
    out = "message 42: channel hie\n  last error:   127.0.0.1:1 answered AE: x\n"
    want = ["message ID: channel hie", "last error:   127.0.0.1:2575 answered AE: …"]
    assert match(out, want, {}, {"ID"}, ports) == {"ID": "42"}
    assert match(out, want, {"ID": "42"}, set(), ports) == {}
    assert match(out, want, {"ID": "7"}, set(), ports) is None
    assert match(out, list(reversed(want)), {}, {"ID"}, ports) is None  # in order
    assert ".venv/bin/outboxd stats -c config/outboxd.yaml" in inline_commands(TOUR.read_text())


async def test_the_tour_shows_what_it_says(suite: Suite):
    tour = steps(TOUR.read_text())
    await suite.start()  # the first step: make run
    ports = {"2575": str(suite.mllp_port), "8080": str(suite.control_port)}
    known: dict[str, str] = {}
    for step in tour[1:]:
        commands = [_substituted(c, known) for c in step.commands]
        capture = {n for n in PLACEHOLDERS if not any(re.search(rf"\b{n}\b", c)
                                                      for c in step.commands)}  # fmt: skip
        look = Look(suite, commands, step.expected, dict(known), capture, ports)
        if step.looks_only:
            found = await eventually(look.shows, f"what {commands} shows", LOOK_AGAIN_FOR,
                                     look.said, interval=LOOK_EVERY)  # fmt: skip
        else:
            found = await look.shows()
            assert found, look.said()
        known |= found[0]
    # the commands the page names in its prose run too
    for command in inline_commands(TOUR.read_text()):
        code, out = await suite.run("sh", "-c", command, timeout=60)
        assert code == 0 and out.strip(), f"{command} exited {code}:\n{out}"


def inline_commands(text: str) -> list[str]:
    """The commands quoted in the page's prose (`.venv/bin/…`, `grep …`)."""
    spans = re.findall(r"(?<!`)`(\.venv/bin/[^`]+|grep [^`]+)`(?!`)", text)
    return [" ".join(span.split()) for span in spans]


@dataclass
class Look:
    """One step's commands run, and whether they show what the page says."""

    suite: Suite
    commands: list[str]
    expected: list[str]
    known: dict[str, str]
    capture: set[str]
    ports: dict[str, str]
    output: str = ""

    async def shows(self) -> list[dict[str, str]]:
        """[what was captured] when the output matches, else []."""
        self.output = ""
        for command in self.commands:
            code, out = await self.suite.run("sh", "-c", command, timeout=60)
            self.output += out
            if code != 0:  # not yet (a grep that finds nothing), or a failure: said()
                self.output += f"\n[{command} exited {code}]"
                return []
        found = match(self.output, self.expected, self.known, self.capture, self.ports)
        return [found] if found is not None else []

    def said(self) -> str:
        expected = "\n".join(self.expected)
        return f"$ {' ; '.join(self.commands)}\n{self.output}\n--- expected ---\n{expected}"


def _substituted(command: str, known: dict[str, str]) -> str:
    for name, value in known.items():
        command = re.sub(rf"\b{name}\b", value, command)
    return command
