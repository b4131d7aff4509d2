"""The signed-URL scheme of the local storage (pure functions, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from pixelflow.adapters.storage import signing
from pixelflow.core.errors import Unauthorized

SECRET = b"secret"
KEY = "uploads/job-1/source"
EXPIRES = 1_900_000_000
BEFORE = datetime.fromtimestamp(EXPIRES - 10, UTC)
GOOD = signing.sign(SECRET, "PUT", KEY, EXPIRES)


def test_signature_is_a_hex_hmac_over_method_key_and_expiry() -> None:
    reference = signing.sign(SECRET, "PUT", KEY, EXPIRES)

    assert len(reference) == 64
    assert int(reference, 16) >= 0
    assert signing.sign(SECRET, "put", KEY, EXPIRES) == reference  # method is case-insensitive
    assert signing.sign(SECRET, "GET", KEY, EXPIRES) != reference
    assert signing.sign(SECRET, "PUT", "uploads/job-2/source", EXPIRES) != reference
    assert signing.sign(SECRET, "PUT", KEY, EXPIRES + 1) != reference
    assert signing.sign(b"other", "PUT", KEY, EXPIRES) != reference


def test_fields_cannot_be_shifted_into_each_other() -> None:
    # Without separators "a" + "b1" and "ab" + "1" would sign the same bytes.
    assert signing.sign(SECRET, "PUT", "a\n1", 2) != signing.sign(SECRET, "PUT", "a", 12)


def test_signed_query_carries_method_expiry_and_signature() -> None:
    query = parse_qs(signing.signed_query(SECRET, "put", KEY, EXPIRES))

    assert query == {
        "method": ["PUT"],
        "expires": [str(EXPIRES)],
        "signature": [signing.sign(SECRET, "PUT", KEY, EXPIRES)],
    }


def test_verify_accepts_a_genuine_url_up_to_its_expiry() -> None:
    signing.verify(SECRET, "PUT", KEY, str(EXPIRES), GOOD, now=BEFORE)
    at_expiry = datetime.fromtimestamp(EXPIRES, UTC)
    signing.verify(SECRET, "PUT", KEY, str(EXPIRES), GOOD, now=at_expiry)


def test_verify_reports_an_expired_url() -> None:
    after = datetime.fromtimestamp(EXPIRES + 1, UTC)

    with pytest.raises(Unauthorized) as caught:
        signing.verify(SECRET, "PUT", KEY, str(EXPIRES), GOOD, now=after)
    assert caught.value.code == "url_expired"


@pytest.mark.parametrize(
    ("method", "key", "expires", "signature"),
    [
        pytest.param("GET", KEY, str(EXPIRES), GOOD, id="method"),
        pytest.param("PUT", KEY + "x", str(EXPIRES), GOOD, id="key"),
        pytest.param("PUT", KEY, str(EXPIRES + 3600), GOOD, id="expiry"),
        pytest.param("PUT", KEY, str(EXPIRES), GOOD.upper(), id="uppercase"),
        pytest.param("PUT", KEY, str(EXPIRES), GOOD[:-1], id="truncated"),
        pytest.param("PUT", KEY, str(EXPIRES), "", id="missing-signature"),
        pytest.param("PUT", KEY, str(EXPIRES), "é" * 64, id="non-ascii-signature"),
        pytest.param("PUT", KEY, "", GOOD, id="missing-expiry"),
        pytest.param("PUT", KEY, f"+{EXPIRES}", GOOD, id="signed-expiry"),
        pytest.param("PUT", KEY, f" {EXPIRES}", GOOD, id="padded-expiry"),
        pytest.param("PUT", KEY, "١٢٣", GOOD, id="non-ascii-digits"),
        pytest.param("PUT", KEY, "9" * 5000, GOOD, id="huge-expiry"),
    ],
)
def test_verify_refuses_anything_not_signed(
    method: str, key: str, expires: str, signature: str
) -> None:
    # Even "now" far in the past: a bad signature wins over any expiry check.
    with pytest.raises(Unauthorized) as caught:
        signing.verify(SECRET, method, key, expires, signature, now=BEFORE)
    assert caught.value.code == "invalid_signature"


def test_a_forged_expiry_is_a_bad_signature_not_an_expired_url() -> None:
    after = datetime.fromtimestamp(EXPIRES + 7200, UTC)

    with pytest.raises(Unauthorized) as caught:
        signing.verify(SECRET, "PUT", KEY, str(EXPIRES + 3600), GOOD, now=after)
    assert caught.value.code == "invalid_signature"
