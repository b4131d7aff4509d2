"""Webhook signatures, both schemes (SPEC §5). Pure: no I/O, no clock.

- PixelFlow's original: ``X-Pixelflow-Signature: sha256=<hex HMAC-SHA256(key, "<ts>.<body>")>``.
- Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>``,
  space-separated when several secrets sign (a rotation's overlap).

One secret serves both: ``whsec_<base64>`` (the Standard Webhooks form) means the decoded bytes
are the key; any other value is used as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


class InvalidSecret(ValueError):
    """A ``whsec_`` secret whose remainder is not base64."""


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form: 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def hmac_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except binascii.Error as exc:
            raise InvalidSecret("a whsec_ secret must be followed by base64") from exc
    return secret.encode()


def pixelflow_signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(hmac_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def standard_signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    message = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(hmac_key(secret), message, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def signature_headers(
    *, event: str, event_id: str, timestamp: int, body: bytes, secrets: list[str]
) -> dict[str, str]:
    """Every header of one delivery. ``secrets`` newest first: the original scheme carries the
    newest only; ``webhook-signature`` carries one signature per secret."""
    if not secrets:
        raise ValueError("a webhook needs at least one signing secret")
    return {
        "Content-Type": "application/json",
        "X-Pixelflow-Event": event,
        "X-Pixelflow-Timestamp": str(timestamp),
        "X-Pixelflow-Signature": pixelflow_signature(secrets[0], timestamp, body),
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(secret, event_id, timestamp, body) for secret in secrets
        ),
    }
