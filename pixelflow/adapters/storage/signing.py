"""HMAC-signed object URLs: how the local storage lets a client PUT one object (it signs no GET:
outputs are downloaded through the outputs route).

A signed URL carries three query parameters:

- ``method``: ``PUT`` (informative; the server checks the request's own method),
- ``expires``: the unix second after which the URL is refused,
- ``signature``: hex HMAC-SHA256, under the storage secret, of
  ``"pixelflow-object-url-v1\\n<METHOD>\\n<key>\\n<expires>"``.

A form upload (``POST /v1/objects``, the twin of S3's presigned POST) carries the same three
values plus ``key`` and ``max_bytes`` as form fields; its MAC adds a ``max_bytes`` line, so the
size limit cannot be raised either.

The signature covers the method, the key and the expiry, so none of them can be changed, and a
URL signed for one method cannot be used for another. The version tag keeps these MACs apart from
anything else the same secret might sign.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlencode

from pixelflow.core.errors import Unauthorized

_DOMAIN = "pixelflow-object-url-v1"
# Unix seconds fit in 11 digits until the year 5138 (and a size limit in bytes well past any
# source's); anything longer is not ours.
_MAX_EXPIRES_DIGITS = 11


def sign(secret: bytes, method: str, key: str, expires: int, max_bytes: int | None = None) -> str:
    parts = [_DOMAIN, method.upper(), key, str(expires)]
    if max_bytes is not None:
        parts.append(str(max_bytes))
    message = "\n".join(parts)
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def signed_query(secret: bytes, method: str, key: str, expires: int) -> str:
    """The query string (without ``?``) of a URL that grants ``method`` on ``key``."""
    signature = sign(secret, method, key, expires)
    return urlencode({"method": method.upper(), "expires": expires, "signature": signature})


def verify(
    secret: bytes,
    method: str,
    key: str,
    expires: str,
    signature: str,
    *,
    now: datetime,
    max_bytes: str | None = None,
) -> None:
    """Accept a request for ``method`` on ``key`` carrying ``expires`` and ``signature``, or raise
    ``Unauthorized``: ``invalid_signature`` for anything not signed by us, ``url_expired`` for a
    genuine URL past its expiry.

    The signature is checked before the expiry, so a forged ``expires`` is reported as a bad
    signature rather than telling the caller anything about time.
    """
    if not _is_number(expires) or (max_bytes is not None and not _is_number(max_bytes)):
        raise _invalid()
    limit = int(max_bytes) if max_bytes is not None else None
    expected = sign(secret, method, key, int(expires), limit)
    # Compare bytes: compare_digest rejects non-ASCII str, and a hostile query may contain some.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise _invalid()
    if now.timestamp() > int(expires):
        raise Unauthorized("the signed URL has expired", code="url_expired")


def _is_number(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= _MAX_EXPIRES_DIGITS


def _invalid() -> Unauthorized:
    return Unauthorized("the URL signature is missing or invalid", code="invalid_signature")
