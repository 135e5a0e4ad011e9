"""``outboxd token new`` as a user runs it: the token printed once, and a line
that pasted under ``control.tokens`` makes a file check-config accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.domain.auth import TOKEN_PREFIX, hash_token
from tests.integration.test_cli import outboxd


def new(*args: str, cwd: Path) -> tuple[int, str, str]:
    result = outboxd("token", "new", *args, cwd=cwd)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_a_new_token_and_its_line_paste_into_a_file_check_config_accepts(tmp_path: Path):
    code, out, err = new("--name", "ci-bot", "--role", "operator", cwd=tmp_path)
    assert (code, err) == (0, "")
    [token] = re.findall(rf"^token: ({TOKEN_PREFIX}[A-Za-z0-9_-]{{43}})$", out, re.M)
    [line] = [line for line in out.splitlines() if line.strip().startswith("- {")]
    assert hash_token(token) in line and token not in line
    (tmp_path / "o.yaml").write_text(
        "database: sqlite:///o.db\ncontrol:\n  host: 0.0.0.0\n  tokens:\n" + line + "\n"
    )
    check = outboxd("check-config", "-c", "o.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr.decode()
    assert "tokens: ci-bot (operator)" in check.stdout.decode()
    assert token not in check.stdout.decode()


def test_each_token_is_new(tmp_path: Path):
    outs = [new("--name", "a", "--role", "viewer", cwd=tmp_path)[1] for _ in range(2)]
    assert outs[0] != outs[1]


def test_without_tokens_a_host_for_others_is_exit_78_naming_control_host(tmp_path: Path):
    (tmp_path / "o.yaml").write_text("database: sqlite:///o.db\ncontrol: {host: 0.0.0.0}\n")
    check = outboxd("check-config", "-c", "o.yaml", cwd=tmp_path)
    assert check.returncode == 78
    assert "control.host: '0.0.0.0' is reachable from other machines" in check.stderr.decode()


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
def test_bad_arguments(tmp_path: Path, args: tuple[str, ...], code: int, words: str):
    result, out, err = new(*args, cwd=tmp_path)
    assert result == code and out == ""
    assert words in err and len(err.strip().splitlines()) <= 3


def test_token_without_an_action_is_a_command_line_error(tmp_path: Path):
    assert outboxd("token", cwd=tmp_path).returncode == 2
