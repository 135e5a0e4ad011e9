"""docs/deploy.md: its YAML is a valid configuration (the node name from the
environment), the unit file it points to runs supervisord in the foreground on
the repository's supervisord.conf, and that file without its demo is the suite."""

import configparser
import re
from pathlib import Path

import pytest

from daemon.config.loader import parse_config
from ops.cluster.host import production_conf

REPO = Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs" / "deploy.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", PAGE, re.S)


def test_the_page_has_a_yaml_example():
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_yaml_example_is_valid_and_names_its_node(block: str):
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", block))
    environ = dict.fromkeys(names, "x") | {"OUTBOXD_NODE": "app1"}
    settings = parse_config(block, source="docs/deploy.md", environ=environ)
    assert settings.node == "app1"
    assert settings.database.url.get_secret_value().startswith("postgresql://")


def test_the_unit_runs_supervisord_in_the_foreground_and_reloads_with_sighup():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((REPO / "ops" / "outboxd.service").read_text())
    service = unit["Service"]
    assert re.search(r"supervisord -n -c \S+/supervisord\.conf$", service["ExecStart"])
    assert "signal HUP outboxd:*" in service["ExecReload"]
    assert service["UMask"] == "0077"
    assert service["Environment"] == "OUTBOXD_NODE=%H"
    assert "[Service]" in (REPO / "ops" / "outboxd.service").read_text()
    assert "ops/outboxd.service" in PAGE


def test_the_production_conf_is_the_suite_without_the_demo():
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(production_conf())
    programs = [s for s in conf.sections() if s.startswith("program:")]
    assert programs == [f"program:{p}" for p in ("dispatcher", "poller", "scheduler", "control")]
    assert "group:demo" not in conf.sections()
    assert conf["group:outboxd"]["programs"] == "dispatcher,poller,scheduler,control"
    fewer = configparser.ConfigParser(interpolation=None)
    fewer.read_string(production_conf({"poller": 0, "scheduler": 1}))
    assert "program:poller" not in fewer.sections()
    assert fewer["program:scheduler"]["numprocs"] == "1"
    assert fewer["group:outboxd"]["programs"] == "dispatcher,scheduler,control"
