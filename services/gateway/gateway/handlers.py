"""Forwarding: one handler per route of the table, bound to the service that owns it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.auth import identity_header, verify_admin
from gateway.edge import CLIENT
from gateway.routes import Route
from gateway.settings import GatewaySettings
from shared.http import IDENTITY_HEADER, REQUEST_ID_HEADER, ApiError, request_id

log = logging.getLogger(__name__)

SESSION = web.AppKey("session", aiohttp.ClientSession)

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
# Never forwarded upstream: the identity header is the gateway's alone to set.
STRIPPED_REQUEST = HOP_BY_HOP | {IDENTITY_HEADER.lower(), "authorization", "cookie"}
# Content-Encoding is kept: the session does not decompress, so the body goes out as the service encoded it.
STRIPPED_RESPONSE = HOP_BY_HOP | {"server", "date"}


def forwarder(route: Route, settings: GatewaySettings) -> Callable[[web.Request], Awaitable[web.Response]]:
    base = settings.upstream(route.service)
    timeout = aiohttp.ClientTimeout(total=route.timeout or settings.default_timeout)

    async def forward(request: web.Request) -> web.Response:
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in STRIPPED_REQUEST)
        if route.admin:
            headers.update(identity_header(verify_admin(request, settings)))
        headers[REQUEST_ID_HEADER] = request_id(request)
        headers["X-Forwarded-For"] = request.get(CLIENT) or request.remote or ""
        body = await request.read() if request.body_exists else None
        # The raw (still percent-encoded) path: decoding it here would turn an id holding `%2F`
        # into two path segments upstream.
        url = URL(base + request.rel_url.raw_path_qs, encoded=True)
        try:
            async with request.app[SESSION].request(
                request.method,
                url,
                headers=headers,
                data=body,
                timeout=timeout,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                response_headers = CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in STRIPPED_RESPONSE
                )
                return web.Response(status=upstream.status, body=payload, headers=response_headers)
        except aiohttp.ClientConnectorError as exc:
            log.warning("upstream unreachable", extra={"service": route.service, "error": str(exc)})
            raise ApiError(503, f"The {route.service} service is unavailable") from exc
        except TimeoutError as exc:
            log.warning("upstream timed out", extra={"service": route.service, "timeout": timeout.total})
            raise ApiError(504, f"The {route.service} service did not answer in time") from exc
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            log.warning("upstream failed", extra={"service": route.service, "error": str(exc)})
            raise ApiError(502, f"The {route.service} service failed to answer") from exc

    forward.__name__ = f"forward_{route.service}"
    return forward
