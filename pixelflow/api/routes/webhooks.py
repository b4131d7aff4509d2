"""/v1/webhooks: the caller's signing secret (``api_key`` mode: every user has their own)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pixelflow.api.deps import route_template, state
from pixelflow.api.render import json_response
from pixelflow.api.spec import ApiRoute, Spec
from pixelflow.core.wire import WebhookSecretView

# The secret must not linger in caches between the caller and the API.
_NO_STORE = {"Cache-Control": "no-store"}


async def get_secret(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    secret = await api.ctx.webhook_secrets.get(user)
    return json_response(secret, headers=_NO_STORE)


async def rotate_secret(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    headers = await api.limiter.take(user, route_template(request))
    secret = await api.ctx.webhook_secrets.rotate(user)
    return json_response(secret, headers={**headers, **_NO_STORE})


routes = [
    ApiRoute(
        "/v1/webhooks/secret",
        get_secret,
        method="GET",
        spec=Spec(
            "The caller's webhook signing secret (api_key mode; 409 in header/none mode)",
            {200: WebhookSecretView},
            errors=(401, 409, 503),
        ),
    ),
    ApiRoute(
        "/v1/webhooks/secret/rotate",
        rotate_secret,
        method="POST",
        spec=Spec(
            "Replace the caller's signing secret; the old one keeps signing for 24 h",
            {200: WebhookSecretView},
            errors=(401, 409, 429, 503),
        ),
    ),
]
