"""API keys: made, checked, listed and revoked here; the store only ever sees their hashes.

Every request in ``api_key`` mode does exactly one store lookup by the key's public id, with no
cache: a revocation holds on every API replica from the next request on. The hash is computed
and compared (against a dummy when no key has that id) whether or not a key was found, so
"no such key" and "wrong secret" cost the same.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Callable
from datetime import timedelta

from msgspec import Struct

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import Conflict, InvalidInput, NotFound
from pixelflow.core.identity import (
    DUMMY_HASH,
    hash_key,
    is_user_id,
    key_id_of,
    new_key,
    parse_key_ref,
    public_prefix,
)
from pixelflow.core.models import ApiKey

MAX_NAME_LENGTH = 100
# last_used_at is written at most this often per key: a write on every request would turn
# every read into a database write.
TOUCH_INTERVAL = timedelta(seconds=60)
# A fresh id colliding with an existing one (36^8 ids) is rare; colliding this often is a bug.
_CREATE_ROUNDS = 5


class CreatedKey(Struct, kw_only=True, frozen=True):
    key: ApiKey
    secret: str  # the full key: shown once, never stored


class KeyService:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock = utc_now,
        make_key: Callable[[], tuple[str, str]] = new_key,
    ) -> None:
        self.store = store
        self.clock = clock
        self.make_key = make_key

    async def create(self, user_id: str, *, name: str = "") -> CreatedKey:
        if not is_user_id(user_id):
            raise InvalidInput(
                "the user id must be 1..128 characters of A-Z a-z 0-9 . _ @ : + -",
                code="invalid_user_id",
            )
        name = _check_name(name)
        for _ in range(_CREATE_ROUNDS):
            key_id, secret = self.make_key()
            key = ApiKey(
                id=key_id,
                user_id=user_id,
                name=name,
                key_hash=hash_key(secret),
                created_at=self.clock(),
            )
            if await self.store.create_api_key(key):
                return CreatedKey(key=key, secret=secret)
        raise Conflict("could not find a free key id; try again", code="api_key_id_taken")

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The live key ``presented`` is, or None (malformed, unknown, wrong or revoked)."""
        key_id = key_id_of(presented)
        if key_id is None:
            return None  # not shaped like a key: nothing to look up, nothing learned
        digest = hash_key(presented)
        stored = await self.store.get_api_key(key_id)
        matches = hmac.compare_digest(stored.key_hash if stored is not None else DUMMY_HASH, digest)
        if stored is None or not matches or stored.revoked_at is not None:
            return None
        now = self.clock()
        if stored.last_used_at is None or now - stored.last_used_at >= TOUCH_INTERVAL:
            await self.store.touch_api_key(stored.id, at=now)
        return stored

    async def live(self, key_id: str) -> ApiKey | None:
        """The key with this id unless it is revoked (a console session checks its key by id on
        every request: it never keeps the key itself)."""
        stored = await self.store.get_api_key(key_id)
        return None if stored is None or stored.revoked_at is not None else stored

    async def list(self, *, user_id: str | None = None) -> list[ApiKey]:
        return await self.store.list_api_keys(user_id=user_id)

    async def revoke(self, ref: str) -> ApiKey:
        """Revoke the key named by its id or ``pf_<id>`` prefix (a revoked key stays so)."""
        key_id = parse_key_ref(ref)
        if key_id is None:
            raise InvalidInput(
                "name the key by its id or its prefix pf_<id> (as `pixelflow keys list` shows)",
                code="invalid_key_ref",
            )
        revoked = await self.store.revoke_api_key(key_id, at=self.clock())
        if revoked is None:
            raise NotFound(f"no API key {public_prefix(key_id)}", code="api_key_not_found")
        return revoked


def _check_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH or any(
        unicodedata.category(char).startswith("C") for char in name
    ):
        raise InvalidInput(
            f"a key name is at most {MAX_NAME_LENGTH} printable characters",
            code="invalid_key_name",
        )
    return name
