"""``outboxd check-config`` never prints a URL's password, or a path or query that
may carry a secret, whether the URL is valid (a summary) or not (an error), in
every URL setting of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import main
from daemon.domain.fields import masked_url

PASSWORD = "Pw5ecret"  # in every URL below, where a password, path or query would be
BAD_URLS = [
    f"http://user:{PASSWORD} WITH SPACE@host/x",
    f"http://user:{PASSWORD}@host:port/x",
    f"ftp://user:{PASSWORD}@host/x",
    f"http://user:{PASSWORD}@/x",
    f"https://hooks.example/services/{PASSWORD} x",
    f"https://hooks.example/x?token={PASSWORD}&a=\tb",
    f"user:{PASSWORD}@host/x",
    PASSWORD,
]
PLACES = {
    "http channel": "channels:\n  c: {{kind: http, url: '{url}'}}\n",
    "fhir channel": "channels:\n  c: {{kind: fhir, base_url: '{url}'}}\n",
    "bpjs channel": "channels:\n  c: {{kind: bpjs_antrean, base_url: '{url}', cons_id: '1', "
    "secret: x, user_key: y}}\n",
    "webhook notifier": "notify:\n  n: {{kind: webhook, url: '{url}', secret: "
    "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LWtleTE=}}\n",
    "http job": "schedules:\n  s: {{every: 1h, job: http, options: {{url: '{url}'}}}}\n",
}


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("place", sorted(PLACES))
def test_an_invalid_url_is_refused_without_its_secret(tmp_path: Path, capsys, place, url):
    config = tmp_path / "outboxd.yaml"
    config.write_text("database: sqlite:///x.db\n" + PLACES[place].format(url=url))
    assert main(["check-config", "-c", str(config)]) == 78
    said = capsys.readouterr()
    assert PASSWORD not in said.out + said.err and "url" in said.err, said.err


@pytest.mark.parametrize(
    "url", [f"postgresql://u:{PASSWORD}@host:port/db", f"mysql://u:{PASSWORD}@h/db\\n"]
)
def test_an_invalid_database_url_is_refused_without_its_secret(tmp_path: Path, capsys, url):
    config = tmp_path / "outboxd.yaml"
    config.write_text(f"database: '{url}'\n")
    assert main(["check-config", "-c", str(config)]) == 78
    said = capsys.readouterr()
    assert PASSWORD not in said.out + said.err and "database" in said.err, said.err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host/x", "'http://user:***@host/…'"),
        ("http://user@host:8080/x?y", "'http://user@host:8080/…'"),
        ("http://host?token=t", "'http://host?…'"),
        ("http://host/", "'http://host/'"),
        ("http://a:b@c:d@host/", "'http://a:***@host/'"),
        ("user:pw@host", "text of 12 characters without a scheme://"),
    ],
)
def test_a_url_in_an_error_shows_where_it_points_and_nothing_else(url, shown):
    assert masked_url(url) == shown
