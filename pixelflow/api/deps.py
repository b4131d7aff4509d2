"""What a route handler needs from the app, typed."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from pixelflow.api.auth import Authenticator
from pixelflow.api.middleware import scope_route
from pixelflow.api.ratelimit import RouteLimiter
from pixelflow.runtime import AppContext


@dataclass
class ApiState:
    ctx: AppContext
    auth: Authenticator
    limiter: RouteLimiter


def state(request: Request) -> ApiState:
    api_state: ApiState = request.app.state.api
    return api_state


def route_template(request: Request) -> str:
    """The route's template as metrics spell it (``/v1/jobs/{id}/start``)."""
    return scope_route(request.scope)
