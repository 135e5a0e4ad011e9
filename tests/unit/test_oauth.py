"""The client credentials grant (``daemon.channels.oauth.grant``) against RFC 6749's
own examples and against oauthlib as an oracle; what a held send becomes; the
settings that refuse a secret written in the file."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oauthlib.oauth2 import BackendApplicationClient
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from oauthlib.oauth2.rfc6749.parameters import parse_token_response

from daemon.channels.base import Outcome
from daemon.channels.oauth.grant import (
    LONGEST_LIFETIME,
    TokenError,
    basic_client_credentials,
    lifetime,
    read_token_response,
    token_request,
)
from daemon.config.errors import ConfigError
from daemon.config.loader import WRITTEN_OUT, parse_config
from daemon.domain.messages import ClaimedMessage, RetryAt
from daemon.operator.summaries import config_summary
from daemon.resilience.backoff import RetryPolicy
from daemon.roles.settle import settle

# --- the request -----------------------------------------------------------------------


def test_basic_client_authentication_is_the_rfcs_example():
    # RFC 6749 §2.3.1 / §4.4.2: client s6BhdRkqt3 with secret gX1fBat3bV
    request = token_request("s6BhdRkqt3", "gX1fBat3bV")
    assert request.headers["Authorization"] == "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body == b"grant_type=client_credentials"  # §4.4.2's whole body


def test_the_body_is_the_one_oauthlib_prepares():
    for scope in (None, "patient/*.write system/Encounter.read"):
        ours = token_request("s6BhdRkqt3", "gX1fBat3bV", scope, client_auth="body")
        theirs = BackendApplicationClient("s6BhdRkqt3").prepare_request_body(
            include_client_id=True, client_secret="gX1fBat3bV", scope=scope
        )
        assert sorted(parse_qsl(ours.body.decode())) == sorted(parse_qsl(theirs))
        assert "Authorization" not in ours.headers


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_basic_credentials_are_form_encoded_before_joining(client_id, secret):
    """Appendix B: an id or secret with ':' or non-ASCII survives the round trip."""
    value = basic_client_credentials(client_id, secret)
    name, _, password = base64.b64decode(value.removeprefix("Basic ")).decode().partition(":")
    assert (unquote_plus(name), unquote_plus(password)) == (client_id, secret)


# --- the answer -----------------------------------------------------------------------

RFC6750_EXAMPLE = (  # RFC 6750 §4: a successful answer carrying a bearer token
    b'{"access_token":"mF_9.B5f-4.1JqM","token_type":"Bearer","expires_in":3600,'
    b'"refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA"}'
)
SATUSEHAT = json.dumps(  # the shape SATUSEHAT's oauth2/v1/accesstoken answers
    {
        "refresh_token_expires_in": "0",
        "token_type": "BearerToken",
        "issued_at": "1676337340766",
        "client_id": "cid",
        "access_token": "uJ6bKkXhGgGmeT3BG8Yq1GjTLWHw",
        "expires_in": "14399",
        "status": "approved",
    }
).encode()


@pytest.mark.parametrize(
    "body",
    [
        RFC6750_EXAMPLE,
        SATUSEHAT,
        b'{"access_token": "abc", "token_type": "bearer", "expires_in": "60"}',
        b'{"access_token": "abc", "token_type": "BEARER"}',
        b'{"access_token": "abc", "token_type": "Bearer", "expires_in": 59.5}',
        b'{"access_token": "abc", "token_type": "Bearer", "scope": "a b"}',
    ],
)
def test_a_token_answer_reads_as_oauthlib_reads_it(body):
    ours = read_token_response(200, body)
    theirs = parse_token_response(body.decode())
    assert ours.value == theirs["access_token"]
    if "expires_in" in theirs:
        assert ours.expires_in == pytest.approx(float(json.loads(body)["expires_in"]))
        assert int(ours.expires_in) == int(float(theirs["expires_in"]))
    else:
        assert ours.expires_in is None
    granted = theirs.get("scope")  # oauthlib splits it into a list
    assert (ours.scope.split() if ours.scope else None) == (list(granted) if granted else None)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3600, 3600.0),
        ("14399", 14399.0),
        (" 60 ", 60.0),
        ("59.5", 59.5),
        (None, None),
        ("", None),
        ("soon", None),
        (0, None),
        ("0", None),
        (-5, None),
        (True, None),
        (float("inf"), None),
        ([60], None),
        (10**12, LONGEST_LIFETIME),
    ],
)
def test_expires_in_as_real_servers_send_it(value, seconds):
    assert lifetime(value) == seconds


def test_the_rfcs_example_token_type_is_not_a_bearer_token():
    # RFC 6749 §4.4.3's example answer names the made-up type "example"
    body = b'{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example","expires_in":3600}'
    with pytest.raises(TokenError) as caught:
        read_token_response(200, body)
    assert caught.value.result == "invalid" and "'example' is not a bearer token" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("status", "body", "result", "words"),
    [
        (401, b'{"error":"invalid_client"}', "refused", "HTTP 401 invalid_client"),
        (
            400,
            b'{"error":"invalid_scope","error_description":"no such\\nscope"}',
            "refused",
            "invalid_scope: no such scope",
        ),
        (
            401,
            b'{"fault":{"faultstring":"Invalid client identifier","detail":{}}}',
            "refused",
            "Invalid client identifier",
        ),
        (403, b"<html>forbidden</html>", "refused", "HTTP 403"),
        (503, b"<html>down</html>", "failed", "HTTP 503"),
        (429, b'{"error":"slow_down"}', "failed", "HTTP 429 slow_down"),
        (302, b"", "failed", "HTTP 302"),
        (200, b"<html>a login page</html>", "invalid", "not a JSON object"),
        (200, b'{"token_type": "Bearer"}', "invalid", "no access_token"),
        (200, b'{"access_token": "a b\\r\\nX-Evil: 1"}', "invalid", "cannot carry"),
        (200, b'{"access_token": "abc", "token_type": "mac"}', "invalid", "'mac'"),
    ],
)
def test_what_an_answer_without_a_token_means(status, body, result, words):
    with pytest.raises(TokenError) as caught:
        read_token_response(status, body)
    assert caught.value.result == result
    assert words in caught.value.detail


def test_an_error_answer_is_an_error_to_oauthlib_too():
    body = '{"error":"invalid_client"}'
    with pytest.raises(oauth_errors.InvalidClientError):
        parse_token_response(body)
    with pytest.raises(TokenError, match="invalid_client"):
        read_token_response(401, body.encode())


def test_retry_after_is_kept_for_a_busy_endpoint():
    with pytest.raises(TokenError) as caught:
        read_token_response(429, b"", retry_after=7.0)
    assert caught.value.retry_after == 7.0 and "wait 7s" in caught.value.detail


def test_a_token_is_never_in_its_repr():
    token = read_token_response(200, RFC6750_EXAMPLE)
    request = token_request("cid", "s3cr3t-value")
    assert "mF_9" not in repr(token)
    assert "Basic" not in repr(request)


# --- a send held back by the channel -------------------------------------------------------


def claimed(attempts: int, age: timedelta, now: datetime) -> ClaimedMessage:
    return ClaimedMessage(1, "c", "create", "k", b"{}", attempts, now - age, now)


@pytest.mark.parametrize("attempts", [0, 11, 500])
def test_a_held_send_waits_uncounted_whatever_the_attempts_or_age(attempts):
    now = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    policy = RetryPolicy(max_attempts=12, backoff=30, max_backoff=600, max_age=3600)
    outcome = Outcome.held("no access token: the token endpoint answered HTTP 503", 4.0)
    result = settle(claimed(attempts, timedelta(days=3), now), outcome, policy, now=lambda: now)
    assert isinstance(result, RetryAt)
    assert result.counted is False
    assert result.at == now + timedelta(seconds=4)
    assert result.error.startswith("no access token")
    assert result.details is not None and result.details["counted"] is False


def test_a_held_send_without_a_wait_takes_a_first_backoff():
    now = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    policy = RetryPolicy(backoff=30, max_backoff=600)
    result = settle(
        claimed(0, timedelta(0), now), Outcome.held("401 again"), policy, now=lambda: now,
        rand=lambda: 0.5,
    )  # fmt: skip
    assert isinstance(result, RetryAt) and result.at == now + timedelta(seconds=15)


def test_held_counts_for_the_breaker():
    assert Outcome.held("x").transport_error and Outcome.held("x").unsent


# --- the settings ---------------------------------------------------------------------------

CHANNEL = """
database: sqlite:///x.db
channels:
  partner:
    kind: http
    url: https://partner.example/in
    auth:
      type: oauth2
      token_url: https://auth.example/token?grant_type=client_credentials
      client_id: {client_id}
      client_secret: {client_secret}
      scope: system/*.write
"""
ENV = {"CID": "the-client-id", "CSECRET": "the-client-secret-value"}


def test_oauth2_credentials_from_the_environment():
    settings = parse_config(
        CHANNEL.format(client_id="${CID}", client_secret='"${CSECRET:?set it}"'), environ=ENV
    )
    auth = settings.channels["partner"].auth
    assert auth.client_secret.get_secret_value() == "the-client-secret-value"
    assert auth.client_auth == "basic"
    summary = "\n".join(config_summary(settings, "o.yaml"))
    assert "OAuth2" in summary
    assert "the-client-secret-value" not in summary and "the-client-id" not in summary


@pytest.mark.parametrize(
    ("client_id", "client_secret", "paths"),
    [
        ("${CID}", "literally-the-secret", ["channels.partner.auth.client_secret"]),
        ("abc", "${CSECRET}", ["channels.partner.auth.client_id"]),
        ("${CID}", "'$${CSECRET}'", ["channels.partner.auth.client_secret"]),  # $$ is a $
        (
            "'1234'",
            "'5678'",
            ["channels.partner.auth.client_id", "channels.partner.auth.client_secret"],
        ),
    ],
)
def test_a_secret_written_in_the_file_is_refused_with_its_path(client_id, client_secret, paths):
    with pytest.raises(ConfigError) as caught:
        parse_config(CHANNEL.format(client_id=client_id, client_secret=client_secret), environ=ENV)
    assert [(i.path, i.message) for i in caught.value.issues] == [(p, WRITTEN_OUT) for p in paths]
    assert "literally-the-secret" not in str(caught.value)


def test_a_status_check_takes_oauth2_and_refuses_a_written_secret():
    text = """
database: sqlite:///x.db
channels: {filings: {kind: http, url: "https://tax.example/submit"}}
schedules:
  statuses:
    every: 5m
    job: status_check
    options:
      channel: filings
      url: https://tax.example/status/{key}
      statuses: {OK: confirmed}
      auth: {type: oauth2, token_url: "https://tax.example/token",
             client_id: "${CID}", client_secret: SECRET_IN_FILE}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ=ENV)
    assert [i.path for i in caught.value.issues] == [
        "schedules.statuses.options.auth.client_secret"
    ]
    settings = parse_config(text.replace("SECRET_IN_FILE", '"${CSECRET}"'), environ=ENV)
    summary = "\n".join(config_summary(settings, "o.yaml"))
    assert "(OAuth2)" in summary and "the-client-secret-value" not in summary
