"""What every process of one deployment must agree on, recorded in its database.

``pixelflow api`` identifies callers and ``pixelflow worker`` signs webhooks by
``PIXELFLOW_AUTH``: each user's own secret with ``api_key``, the shared
``WEBHOOK_SIGNING_SECRET`` otherwise. A worker whose mode differs from the API's signs every
event with a secret the receivers do not hold, and nothing would say so until the first
receiver complained. So the first ``api`` or ``worker`` to start records its mode, every later
one compares its own with it and refuses to start on a difference, and an operator changes the
record on purpose (``pixelflow auth-mode``).
"""

from __future__ import annotations

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.errors import Conflict

AUTH_MODE = "auth_mode"


class DeploymentSettings:
    def __init__(self, store: Store, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    async def agree_on_auth_mode(self, mode: str) -> None:
        """Record ``mode`` as the deployment's if none is; ``Conflict`` if another one is."""
        recorded = await self.store.claim_deployment_setting(AUTH_MODE, mode, now=self.clock())
        if recorded != mode:
            raise Conflict(
                f"PIXELFLOW_AUTH={mode}, but this deployment runs with PIXELFLOW_AUTH={recorded} "
                "(recorded in its database by the first `pixelflow api` or `pixelflow worker` "
                "to start). The API and the workers must agree: the mode decides whose secret "
                f"signs webhooks. Set PIXELFLOW_AUTH={recorded}, or switch the deployment with "
                f"`pixelflow auth-mode {mode}` and restart every api and worker.",
                code="auth_mode_mismatch",
            )

    async def auth_mode(self) -> str | None:
        """The deployment's recorded mode; None before any api or worker has started."""
        return await self.store.deployment_setting(AUTH_MODE)

    async def set_auth_mode(self, mode: str) -> None:
        await self.store.set_deployment_setting(AUTH_MODE, mode, now=self.clock())
