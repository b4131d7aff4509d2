"""Who a caller is: user ids, and the shape of API keys. Pure functions, no I/O.

An API key reads ``pf_<id>_<secret>``: ``pf_`` makes a leaked key easy to recognise (secret
scanners, logs), ``<id>`` is 8 public characters the store looks the key up by, and
``<secret>`` is 32 random bytes in base64url (43 characters). The store keeps the id and the
SHA-256 of the whole key, never the key: with 256 bits of entropy a fast hash is enough (no
password stretching needed), and a database dump does not let anyone call the API.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

KEY_PREFIX = "pf_"
KEY_ID_LENGTH = 8
SECRET_BYTES = 32
# Lower-case letters and digits: readable aloud, safe in a shell, never "_" (the separator).
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_KEY = re.compile(rf"^{KEY_PREFIX}([a-z0-9]{{{KEY_ID_LENGTH}}})_([A-Za-z0-9_-]{{43}})$")
_KEY_ID = re.compile(rf"^(?:{KEY_PREFIX})?([a-z0-9]{{{KEY_ID_LENGTH}}})$")
# SPEC §2: what a user id may look like, whether it comes from a gateway's header or a key.
_USER_ID = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")
# Compared against when no key has the presented id, so that "no such key" costs the same
# hash and comparison as "wrong key".
DUMMY_HASH = hashlib.sha256(b"pixelflow: no such key").hexdigest()


def is_user_id(value: str) -> bool:
    return _USER_ID.fullmatch(value) is not None


def new_key() -> tuple[str, str]:
    """A fresh ``(key id, full key)``."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}"


def key_id_of(presented: str) -> str | None:
    """The lookup id of something shaped like a key; None when it cannot be one."""
    match = _KEY.fullmatch(presented)
    return None if match is None else match[1]


def parse_key_ref(ref: str) -> str | None:
    """A key named by an operator: its id, or its public prefix ``pf_<id>``."""
    match = _KEY_ID.fullmatch(ref.strip())
    return None if match is None else match[1]


def hash_key(presented: str) -> str:
    return hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest()


def public_prefix(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id}"
