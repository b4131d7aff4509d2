"""Object writes sent straight to a presigned URL over a plain aiohttp session.

botocore's per-request machinery (parameter validation, endpoint rules, event hooks, checksum
and header signing, an ``Expect: 100-continue`` round trip) costs a few milliseconds of CPU per
``put_object``: more than all the rest of a job's bookkeeping in the worker, and on two cores
that CPU is taken from libvips. Signing a URL is a fraction of that, and a PUT to it costs what
any HTTP request costs. botocore still does the signing, so credentials (their refresh
included), the region and the endpoint stay its business; ``Content-MD5`` has S3 check that the
body it stores is the one that was sent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
import ssl
import urllib.request

import aiohttp
from yarl import URL

from pixelflow.core.errors import StorageUnavailable

logger = logging.getLogger(__name__)

# The same budget as the botocore client's: one retry, connecting in 3 s, reading in 10 s.
# (aiohttp also resends an idempotent request once by itself when the server hangs up.)
ATTEMPTS = 2
_CONNECT_SECONDS = 3.0
_READ_SECONDS = 10.0
_RETRY_JITTER_SECONDS = 0.5
# botocore's default pool size per client.
_CONNECTIONS = 10
# Hashing a small body costs less than a thread hop; a big one must not stall the event loop.
_HASH_INLINE_BYTES = 256 * 1024
# An S3 error document is a few hundred bytes; read no more than this of whatever comes back.
_ERROR_BODY_BYTES = 16 * 1024
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
# Worth another try: the server or a proxy in front of it says it is busy or broken right now.
_TRANSIENT_CODES = frozenset({"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable"})


class DirectPut:
    """PUTs to presigned URLs. One per storage instance (one connection pool); ``close()``
    releases it."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._proxies: dict[tuple[str, str], str | None] = {}

    @classmethod
    def open(cls, *, cafile: str | None) -> DirectPut:
        """``cafile`` verifies an HTTPS endpoint (the CA bundle botocore uses); must be called
        on the event loop that will use it."""
        context = ssl.create_default_context(cafile=cafile)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=_CONNECTIONS, ssl=context),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=_CONNECT_SECONDS, sock_read=_READ_SECONDS
            ),
            # Not trust_env: it reads ~/.netrc in a thread for every request. The proxy
            # settings botocore honours are looked up once per endpoint instead (_proxy_for).
        )
        return cls(session)

    async def put(self, url: str, data: bytes, *, content_type: str) -> None:
        """Send ``data`` to the presigned ``url``; ``StorageUnavailable`` if S3 does not store
        it after ``ATTEMPTS`` tries."""
        headers = {"Content-Type": content_type, "Content-MD5": await _content_md5(data)}
        # Already encoded by the signer: sent as signed, never re-quoted.
        target = URL(url, encoded=True)
        for attempt in range(1, ATTEMPTS + 1):
            last = attempt == ATTEMPTS
            try:
                async with self._session.put(
                    target, data=data, headers=headers, proxy=self._proxy_for(target)
                ) as response:
                    if response.status < 300:
                        return
                    status = response.status
                    code = _error_code(await response.content.read(_ERROR_BODY_BYTES))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if last:
                    logger.warning("S3 endpoint unreachable: %s", type(exc).__name__)
                    raise StorageUnavailable("object storage is unavailable") from exc
            else:
                if last or not _transient(status, code):
                    logger.warning("S3 request failed: %s (HTTP %s)", code, status)
                    raise StorageUnavailable("object storage is unavailable")
            await asyncio.sleep(random.uniform(0, _RETRY_JITTER_SECONDS))

    async def close(self) -> None:
        await self._session.close()

    def _proxy_for(self, url: URL) -> str | None:
        """The proxy the environment names for ``url`` (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)."""
        endpoint = (url.scheme, url.host or "")
        if endpoint not in self._proxies:
            scheme, host = endpoint
            bypass = urllib.request.proxy_bypass(host)
            self._proxies[endpoint] = None if bypass else urllib.request.getproxies().get(scheme)
        return self._proxies[endpoint]


async def _content_md5(data: bytes) -> str:
    small = len(data) <= _HASH_INLINE_BYTES
    digest = _md5(data) if small else await asyncio.to_thread(_md5, data)
    return base64.b64encode(digest).decode()


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _error_code(body: bytes) -> str:
    found = _ERROR_CODE.search(body)
    return found.group(1).decode() if found else ""


def _transient(status: int, code: str) -> bool:
    return status >= 500 or status == 429 or code in _TRANSIENT_CODES
