"""Whose secret signs a user's webhooks, and the per-user secret routes behind it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pixelflow.adapters.store.protocol import Store
from pixelflow.core import signing, webhooks
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import Conflict
from pixelflow.core.wire import WebhookSecretView


class SigningSecrets:
    """Whose secret signs: the user's own in ``api_key`` mode, else the operator's shared one."""

    def __init__(
        self,
        store: Store,
        *,
        shared: str | None,
        clock: Clock = utc_now,
        new_secret: Callable[[], str] = signing.new_secret,
    ) -> None:
        self.store = store
        self.shared = shared
        self.clock = clock
        self.new_secret = new_secret

    @property
    def per_user(self) -> bool:
        return self.shared is None

    async def signing(self, user_id: str) -> list[str]:
        """The secrets that sign this user's events now, newest first."""
        if self.shared is not None:
            return [self.shared]
        now = self.clock()
        secret = await self.store.webhook_secret(user_id, new_secret=self.new_secret(), now=now)
        return secret.signing(now)

    async def get(self, user_id: str) -> WebhookSecretView:
        self._require_per_user()
        now = self.clock()
        secret = await self.store.webhook_secret(user_id, new_secret=self.new_secret(), now=now)
        return _view(secret.secret, secret.previous_expires_at, now)

    async def rotate(self, user_id: str) -> WebhookSecretView:
        self._require_per_user()
        now = self.clock()
        secret = await self.store.rotate_webhook_secret(
            user_id, new_secret=self.new_secret(), now=now, overlap=webhooks.ROTATION_OVERLAP
        )
        return _view(secret.secret, secret.previous_expires_at, now)

    def _require_per_user(self) -> None:
        if not self.per_user:
            raise Conflict(
                "webhooks are signed with the operator's WEBHOOK_SIGNING_SECRET in this "
                "authentication mode; there is no per-user secret",
                code="webhook_secret_shared",
            )


def _view(secret: str, previous_expires_at: datetime | None, now: datetime) -> WebhookSecretView:
    if previous_expires_at is not None and previous_expires_at <= now:
        previous_expires_at = None
    return WebhookSecretView(secret=secret, previous_expires_at=previous_expires_at)
