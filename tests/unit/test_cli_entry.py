"""The command line's entry: ``outboxd run ROLE`` is parsed by the parser of that
command alone, which reads and answers as the whole parser's ``run`` does; and
pydantic's plugins are not looked for unless the caller says which."""

from __future__ import annotations

import argparse
import os

import pytest

from daemon.cli import main
from daemon.cli.parser import build_parser
from daemon.cli.roles import run_parser


def run_subparser() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices["run"]
    return found


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "dispatcher"],
        ["run", "poller", "-c", "/etc/outboxd.yaml", "--process-num", "3"],
        ["run", "--config=x.yaml", "control"],
    ],
)
def test_the_run_parser_reads_what_the_whole_parser_reads(argv: list[str]) -> None:
    assert vars(run_parser().parse_args(argv[1:])) == vars(build_parser().parse_args(argv))


def test_the_run_parser_helps_as_the_whole_parsers_run_does() -> None:
    assert run_parser().format_help() == run_subparser().format_help()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "janitor"],
        ["run"],
        ["run", "poller", "--process-num", "x"],
        ["run", "dispatcher", "extra"],  # left over: refused by the whole parser
        ["run", "dispatcher", "--bogus"],
        ["run", "--version"],
    ],
)
def test_the_run_parser_refuses_as_the_whole_parser_does(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as whole:
        build_parser().parse_args(argv)
    said = capsys.readouterr().err
    with pytest.raises(SystemExit) as alone:
        main(argv)
    assert (alone.value.code, capsys.readouterr().err) == (whole.value.code, said)
    assert whole.value.code == 2 and said.startswith("usage: outboxd ")


def test_pydantic_plugins_are_not_looked_for_unless_the_caller_names_some(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "logfire")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "logfire"
    assert capsys.readouterr().out.startswith("outboxd ")
