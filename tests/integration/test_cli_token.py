"""``outboxd token new`` as a user runs it: the token printed once, and a line
that pasted under ``control.tokens`` makes a file check-config accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.domain.auth import TOKEN_PREFIX, hash_token
from tests.support.cli import Cli


def new(cli: Cli, *args: str, cwd: Path) -> tuple[int, str, str]:
    result = cli("token", "new", *args, cwd=cwd)
    return result.code, result.out, result.err


def test_a_new_token_and_its_line_paste_into_a_file_check_config_accepts(cli: Cli, tmp_path: Path):
    code, out, err = new(cli, "--name", "ci-bot", "--role", "operator", cwd=tmp_path)
    assert (code, err) == (0, "")
    [token] = re.findall(rf"^token: ({TOKEN_PREFIX}[A-Za-z0-9_-]{{43}})$", out, re.M)
    [line] = [line for line in out.splitlines() if line.strip().startswith("- {")]
    assert hash_token(token) in line and token not in line
    (tmp_path / "o.yaml").write_text(
        "database: sqlite:///o.db\ncontrol:\n  host: 0.0.0.0\n  tokens:\n" + line + "\n"
    )
    check = cli("check-config", "-c", "o.yaml", cwd=tmp_path)
    assert check.code == 0, check.err
    assert "tokens: ci-bot (operator)" in check.out
    assert token not in check.out


def test_each_token_is_new(cli, tmp_path: Path):
    outs = [new(cli, "--name", "a", "--role", "viewer", cwd=tmp_path)[1] for _ in range(2)]
    assert outs[0] != outs[1]


def test_without_tokens_a_host_for_others_is_exit_78_naming_control_host(cli: Cli, tmp_path: Path):
    (tmp_path / "o.yaml").write_text("database: sqlite:///o.db\ncontrol: {host: 0.0.0.0}\n")
    check = cli("check-config", "-c", "o.yaml", cwd=tmp_path)
    assert check.code == 78
    assert "control.host: '0.0.0.0' is reachable from other machines" in check.err


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--name", "a", "--role", "root"), 64, "--role: no role 'root' (roles: viewer, operator"),
        (("--name", "a", "--role", "Admin"), 64, "--role: no role 'Admin'"),
        (("--name", "1a", "--role", "admin"), 64, "--name: invalid name '1a'"),
        (("--name", "a b", "--role", "admin"), 64, "--name: invalid name 'a b'"),
        (("--name", "a" * 65, "--role", "admin"), 64, "--name: invalid name"),
        (("--role", "admin"), 2, "--name"),
        (("--name", "a"), 2, "--role"),
    ],
)
def test_bad_arguments(cli: Cli, tmp_path: Path, args: tuple[str, ...], code: int, words: str):
    result, out, err = new(cli, *args, cwd=tmp_path)
    assert result == code and out == ""
    assert words in err and len(err.strip().splitlines()) <= 3


def test_token_without_an_action_is_a_command_line_error(cli: Cli, tmp_path: Path):
    assert cli("token", cwd=tmp_path).code == 2
