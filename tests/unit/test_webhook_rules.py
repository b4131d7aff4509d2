"""Webhook signing, the retry schedule and the address guard: the pure rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from pixelflow.core import netpolicy, signing, webhooks
from pixelflow.core.errors import InvalidInput
from pixelflow.core.models import WebhookSecret

BODY = b'{"event":"job.completed","event_id":"evt_1","id":"j1"}'
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def headers_for(*secrets: str, timestamp: int | None = None) -> dict[str, str]:
    return signing.signature_headers(
        event="job.completed",
        event_id="evt_1",
        timestamp=int(datetime.now(UTC).timestamp()) if timestamp is None else timestamp,
        body=BODY,
        secrets=list(secrets),
    )


# -- signatures --------------------------------------------------------------------------------


def test_standard_webhooks_signature_verifies_with_the_reference_package() -> None:
    secret = signing.new_secret()
    headers = headers_for(secret)
    assert Webhook(secret).verify(BODY, headers) == {
        "event": "job.completed",
        "event_id": "evt_1",
        "id": "j1",
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)


def test_a_plain_secret_is_its_utf8_bytes_in_both_schemes() -> None:
    secret = "plain-old-shared-secret"
    headers = headers_for(secret)
    Webhook(secret.encode()).verify(BODY, headers)
    timestamp = headers["X-Pixelflow-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + BODY, hashlib.sha256)
    assert headers["X-Pixelflow-Signature"] == f"sha256={expected.hexdigest()}"


def test_original_signature_uses_the_decoded_whsec_key() -> None:
    key = b"\x00\x01binary key bytes\xff"
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = headers_for(secret, timestamp=1700000000)
    expected = hmac.new(key, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers["X-Pixelflow-Signature"] == f"sha256={expected}"
    assert headers["X-Pixelflow-Timestamp"] == headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-id"] == "evt_1"
    assert headers["X-Pixelflow-Event"] == "job.completed"


def test_during_a_rotation_both_secrets_sign_and_the_original_uses_the_newest() -> None:
    new, old = signing.new_secret(), signing.new_secret()
    headers = headers_for(new, old)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    newest_only = headers_for(new, timestamp=int(headers["X-Pixelflow-Timestamp"]))
    assert headers["X-Pixelflow-Signature"] == newest_only["X-Pixelflow-Signature"]


def test_a_whsec_secret_that_is_not_base64_is_refused() -> None:
    with pytest.raises(signing.InvalidSecret):
        signing.hmac_key("whsec_***")


def test_previous_secret_signs_only_until_it_expires() -> None:
    secret = WebhookSecret(
        user_id="u",
        secret="new",
        created_at=NOW,
        previous_secret="old",
        previous_expires_at=NOW + timedelta(hours=24),
    )
    assert secret.signing(NOW) == ["new", "old"]
    assert secret.signing(NOW + timedelta(hours=24)) == ["new"]


# -- retry schedule ------------------------------------------------------------------------------

POLICY = webhooks.RetryPolicy(max_attempts=8, initial_backoff=1, max_backoff=3600)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert webhooks.decide(1, status, None, POLICY, lambda: 0.5).state == "delivered"


def test_410_stops_at_once() -> None:
    outcome = webhooks.decide(1, 410, 30.0, POLICY, lambda: 0.5)
    assert (outcome.state, outcome.retry_in) == ("failed", None)


@pytest.mark.parametrize("status", [None, 301, 302, 400, 404, 429, 500, 503])
def test_other_answers_retry_until_the_last_attempt(status: int | None) -> None:
    assert webhooks.decide(7, status, None, POLICY, lambda: 0.5).state == "pending"
    assert webhooks.decide(8, status, None, POLICY, lambda: 0.5).state == "failed"


def test_backoff_doubles_with_jitter_between_half_and_all_and_is_capped() -> None:
    assert [webhooks.backoff(n, POLICY, lambda: 1.0) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [webhooks.backoff(n, POLICY, lambda: 0.0) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
    assert webhooks.backoff(30, POLICY, lambda: 1.0) == 3600


def test_retry_after_is_honoured_and_capped() -> None:
    assert webhooks.decide(1, 503, 7.0, POLICY, lambda: 0.5).retry_in == 7.0
    capped = webhooks.RetryPolicy(max_attempts=8, initial_backoff=1, max_backoff=60)
    assert webhooks.decide(1, 429, 86400.0, capped, lambda: 0.5).retry_in == 60


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert webhooks.parse_retry_after("120", NOW) == 120
    assert webhooks.parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", NOW) == 30
    assert webhooks.parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", NOW) == 0
    assert webhooks.parse_retry_after("soon", NOW) is None
    assert webhooks.parse_retry_after(None, NOW) is None


# -- address guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 around the metadata address
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "64:ff9b::a9fe:a9fe",  # NAT64 to the metadata address
        "64:ff9b::7f00:1",  # NAT64 to loopback
        "64:ff9b:1::a00:1",  # local-use NAT64 to 10.0.0.1
        "0.0.0.0",
        "not an address",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not netpolicy.is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert netpolicy.is_public_address(address)


def test_not_resolving_and_not_public_are_one_error() -> None:
    with pytest.raises(InvalidInput) as unresolved:
        netpolicy.check_addresses("internal.example", [])
    with pytest.raises(InvalidInput) as private:
        netpolicy.check_addresses("internal.example", ["93.184.215.14", "10.0.0.1"])
    assert unresolved.value.code == private.value.code == "webhook_url_not_allowed"
    assert unresolved.value.message == private.value.message


def test_url_is_capped_at_2048_characters() -> None:
    url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    assert netpolicy.webhook_host(url) == ("example.com", 443)
    with pytest.raises(InvalidInput) as too_long:
        netpolicy.webhook_host(url + "a")
    assert too_long.value.code == "invalid_webhook_url"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "https://user:pw@example.com/", "http:///path", "http://[::1"]
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        netpolicy.webhook_host(url)
    assert refused.value.code == "invalid_webhook_url"
