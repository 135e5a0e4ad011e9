"""The house in layers, as it loads: each entry point and each protocol package
imports only what it needs (checked in a fresh interpreter, by what lands in
``sys.modules``), and the import-linter contracts hold (``lint-imports``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiohttp", "psycopg", "peewee", "apscheduler", "prometheus_client")
PROTOCOL = (
    "daemon.domain",
    "daemon.hl7",
    "daemon.bpjs",
    "daemon.webhooks",
    "daemon.scheduling",
    "daemon.resilience",
    "daemon.channels",
    "daemon.sources",
    "daemon.jobs",
    "daemon.notify",
)


def loaded_after(code: str) -> set[str]:
    """The module names loaded once ``code`` has run in a new interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def packages_under(prefix: str) -> list[str]:
    base = ROOT / prefix.replace(".", "/")
    found = [prefix]
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in found:
            found.append(name)
    return found


def test_the_command_line_loads_no_framework_and_no_driver() -> None:
    loaded = top_level(loaded_after("import daemon.cli"))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not loaded & {"pydantic", "yaml"}, "the parser needs no settings models"


def test_help_loads_no_framework_and_no_driver() -> None:
    code = (
        "import contextlib, io\n"
        "from daemon.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['schedules', 'add', '--help'])"
    )
    loaded = top_level(loaded_after(code))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_console_script_answers_help_at_once() -> None:
    outboxd = shutil.which("outboxd", path=str(Path(sys.executable).parent))
    assert outboxd is not None, "the console script is installed beside the interpreter"
    done = subprocess.run([outboxd, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0
    assert "enqueue" in done.stdout and "schedules" in done.stdout


PROTOCOL_PACKAGES = [p for top in PROTOCOL for p in packages_under(top)]


def store_modules(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m == "daemon.store" or m.startswith("daemon.store."))


def test_protocol_code_loads_no_store() -> None:
    """Every protocol module imported in one interpreter loads no store module: an
    import only adds to ``sys.modules``, so what one of them loaded would be there.
    When something is, each is imported alone to name the ones at fault."""
    assert len(PROTOCOL_PACKAGES) > 50, PROTOCOL_PACKAGES  # the walk found the tree
    loaded = loaded_after("\n".join(f"import {p}" for p in PROTOCOL_PACKAGES))
    assert PROTOCOL_PACKAGES[-1] in loaded
    if store_modules(loaded) or top_level(loaded) & {"peewee", "psycopg"}:
        at_fault = [
            package
            for package in PROTOCOL_PACKAGES
            if store_modules(alone := loaded_after(f"import {package}"))
            or top_level(alone) & {"peewee", "psycopg"}
        ]
        raise AssertionError(f"{at_fault} load the store: {store_modules(loaded)[:5]} …")


def test_loading_the_settings_loads_no_framework_and_no_driver() -> None:
    """Reading a YAML file with every kind of channel, source, job and notifier
    builds the kinds' settings, not their implementations."""
    config = ROOT / "config" / "outboxd.yaml"
    loaded = top_level(
        loaded_after(
            "from daemon.config.loader import parse_config\n"
            f"parse_config(open({str(config)!r}).read(), source='outboxd.yaml', environ={{}})"
        )
    )
    assert not loaded & {*HEAVY, "pymysql"}, sorted(loaded & {*HEAVY, "pymysql"})


@pytest.mark.parametrize(
    ("backend", "unused"),
    [
        ("sqlite", {"psycopg", "psycopg2", "psycopg2cffi", "pymysql", "MySQLdb"}),
        ("postgresql", {"psycopg2", "psycopg2cffi", "pymysql", "MySQLdb"}),
    ],
)
def test_a_store_worker_loads_its_backends_driver_alone_and_no_settings_models(
    backend: str, unused: set[str]
) -> None:
    """A dispatcher's store worker, told its backend, imports the store and that
    driver alone (peewee would import every driver installed); never pydantic or
    YAML (it is handed the database as a plain value)."""
    code = (
        "import socket, sys\n"
        "from daemon.store import worker\n"
        "ours, theirs = socket.socketpair()\n"
        "ours.close()  # no settings come: it imports, sees the end, returns\n"
        f"assert worker.main(['worker', str(theirs.detach()), {backend!r}]) == 0\n"
        "for hidden in [k for k, v in sys.modules.items() if v is None]:\n"
        "    del sys.modules[hidden]  # the drivers it hid: marks, not modules"
    )
    loaded = top_level(loaded_after(code))
    assert {"peewee", "daemon"} <= loaded
    assert not loaded & {*unused, "pydantic", "yaml", "aiohttp"}, sorted(loaded & unused)
    assert ("psycopg" in loaded) is (backend == "postgresql")


def test_the_layer_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is installed with the test extra"
    done = subprocess.run([lint], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
