"""Webhook requests with aiohttp, connecting only to the addresses the guard checked.

Each request gets a connector whose resolver answers with the vetted addresses, so the URL
(hence the Host header and TLS SNI and certificate check) stays the receiver's name while the
socket goes where the check said it may. Connections are not reused across requests: a
pooled connection would skip the check the next request made.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from pixelflow.adapters.webhook.protocol import SendFailed, WebhookRequest, WebhookResponse

# A receiver's answer body is read (so the connection closes cleanly) but never stored.
_MAX_BODY = 64 * 1024


class PinnedResolver(AbstractResolver):
    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not self._addresses:
            raise OSError(f"no vetted address for {host}")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self._addresses
        ]

    async def close(self) -> None:
        pass


class AiohttpWebhookClient:
    def __init__(self, *, user_agent: str = "PixelFlow-Webhooks") -> None:
        self._user_agent = user_agent

    async def post(self, request: WebhookRequest) -> WebhookResponse:
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(request.addresses),
            use_dns_cache=False,
            force_close=True,
            family=socket.AF_UNSPEC,
        )
        timeout = aiohttp.ClientTimeout(total=request.timeout)
        headers = {"User-Agent": self._user_agent, **request.headers}
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.post(
                    request.url, data=request.body, headers=headers, allow_redirects=False
                ) as response,
            ):
                await _drain(response)
                return WebhookResponse(
                    status=response.status, retry_after=response.headers.get("Retry-After")
                )
        except TimeoutError:
            raise SendFailed(f"no response within {request.timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise SendFailed(f"connection failed ({exc.os_error.__class__.__name__})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SendFailed(f"request failed ({exc.__class__.__name__})") from None

    async def aclose(self) -> None:
        pass


async def _drain(response: Any) -> None:
    read = 0
    async for chunk in response.content.iter_chunked(8192):
        read += len(chunk)
        if read >= _MAX_BODY:
            break
