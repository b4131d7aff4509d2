"""/v1/usage: the caller's usage over a time range, per UTC day with ``group=day``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pixelflow.api.deps import state
from pixelflow.api.render import json_response
from pixelflow.api.spec import ApiRoute, Spec
from pixelflow.core.usage import parse_instant
from pixelflow.core.validation import decode_query, given
from pixelflow.core.wire import UsageQuery, UsageReport


async def get_usage(request: Request) -> Response:
    api = state(request)
    user = await api.auth.user_id(request)
    query = decode_query(request.query_params, UsageQuery)
    start, end = given(query.start), given(query.end)
    report = await api.ctx.usage.report(
        user,
        start=parse_instant("from", start) if start else None,
        end=parse_instant("to", end) if end else None,
        by_day=given(query.group) == "day",
    )
    return json_response(report)


routes = [
    ApiRoute(
        "/v1/usage",
        get_usage,
        method="GET",
        spec=Spec(
            "The caller's usage totals over [from, to), per UTC day with group=day",
            {200: UsageReport},
            errors=(400, 401, 503),
            query=UsageQuery,
        ),
    )
]
