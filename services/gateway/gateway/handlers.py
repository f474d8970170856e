"""Forwarding: one handler per route of the table, bound to the service that owns it.

Each service may have several instances (`GatewaySettings.upstreams`): a request goes to the next
one in turn; a connection that cannot be made fails over to the next instance within the same
request; a connection lost before any answer is retried once when the request is safe to repeat.
Only when no instance could be reached is the answer a 503.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import Counter

from gateway.auth import caller, identity_header
from gateway.edge import CLIENT
from gateway.routes import Route
from gateway.settings import GatewaySettings
from gateway.upstream_http import Lost, Unreachable, UpstreamClient, UpstreamError
from gateway.upstreams import UpstreamPool
from shared import metrics
from shared.http import BODY_METHODS, REQUEST_ID_HEADER, ApiError, refuse_unknown_encoding, request_id
from shared.identity import IDENTITY_HEADER, SIGNATURE_HEADER

log = logging.getLogger(__name__)

UPSTREAM = web.AppKey("upstream", UpstreamClient)

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
# Never forwarded upstream: the identity headers are the gateway's alone to set.
STRIPPED_REQUEST = frozenset(
    HOP_BY_HOP | {IDENTITY_HEADER.lower(), SIGNATURE_HEADER.lower(), "authorization", "cookie"}
)
# Content-Encoding is kept: the client does not decompress, so the body goes out as the service encoded it.
STRIPPED_RESPONSE = frozenset(HOP_BY_HOP | {"server", "date"})


def without(headers: CIMultiDict[str] | CIMultiDictProxy[str], names: frozenset[str]) -> CIMultiDict[str]:
    """A copy of headers less every occurrence of names (lower-case).

    Copying whole and deleting the few present is several times cheaper than filtering item by item
    in Python, and this runs twice per forwarded request.
    """
    kept = headers.copy()
    for name in names:
        if name in kept:
            del kept[name]
    return kept


REPEATABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
IDEMPOTENCY_KEY = "Idempotency-Key"

UPSTREAM_UNREACHABLE = Counter(
    "commerce_upstream_unreachable_total",
    "connections to an upstream instance that could not be made, by upstream service",
    ("upstream",),
    registry=metrics.REGISTRY,
)
UPSTREAM_RETRIED = Counter(
    "commerce_upstream_retried_total",
    "requests sent again after their connection was lost before an answer, by upstream service",
    ("upstream",),
    registry=metrics.REGISTRY,
)


def repeatable(route: Route, request: web.Request) -> bool:
    """Whether sending the request twice has the effect of sending it once.

    PUT and DELETE set a state; a POST with an Idempotency-Key is recorded under that key by the
    service (a repeat replays or waits); some POSTs are safe by design (`Route.repeatable`).
    """
    return (
        request.method in REPEATABLE_METHODS
        or route.repeatable
        or (request.method == "POST" and bool(request.headers.get(IDEMPOTENCY_KEY, "").strip()))
    )


def forwarder(
    route: Route, settings: GatewaySettings, pool: UpstreamPool
) -> Callable[[web.Request], Awaitable[web.Response]]:
    budget = route.timeout or settings.default_timeout

    async def forward(request: web.Request) -> web.Response:
        headers = without(request.headers, STRIPPED_REQUEST)
        who = caller(route, request, settings)
        if who is not None:
            headers.update(identity_header(who, settings))
        headers[REQUEST_ID_HEADER] = request_id(request)
        headers["X-Forwarded-For"] = request.get(CLIENT) or request.remote or ""
        # One deadline for the whole request, receiving the body and failovers included: the
        # route's timeout is what the client and the shutdown budget count on, and a client that
        # trickles its body holds a connection no longer than that.
        deadline = time.monotonic() + budget
        body = None
        if request.method in BODY_METHODS and request.body_exists:
            refuse_unknown_encoding(request)  # why send upstream what it cannot decode
            try:
                async with asyncio.timeout(budget):
                    body = await request.read()
            except TimeoutError as exc:
                raise ApiError(408, f"The request body did not arrive within {budget:g} s") from exc
        elif request.body_exists:
            # A GET's body has no meaning (the services never read one): not sent on, and the
            # Content-Encoding that described it goes with it.
            headers.popall("Content-Encoding", None)
        # The raw (still percent-encoded) path: decoding it here would turn an id holding `%2F`
        # into two path segments upstream.
        path = request.rel_url.raw_path_qs
        candidates = collections.deque(pool.candidates())
        may_retry = repeatable(route, request)
        while candidates:
            instance = candidates.popleft()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                # A slot of the service's in-flight limit for this exchange (the body is in hand):
                # all taken past a short wait, a 503 at once (`upstreams.Busy`).
                async with asyncio.timeout(remaining), pool.in_flight:
                    answer = await request.app[UPSTREAM].request(
                        instance.url,
                        request.method,
                        path,
                        headers,
                        body,
                        connect_timeout=min(settings.upstream_connect_timeout, remaining),
                    )
            except Unreachable as exc:
                UPSTREAM_UNREACHABLE.labels(route.service).inc()
                pool.mark_down(instance)
                log.warning(
                    "upstream unreachable",
                    extra={"service": route.service, "instance": instance.url, "error": str(exc)},
                )
                continue
            except TimeoutError as exc:
                raise _timed_out(route, budget) from exc
            except Lost as exc:
                if not may_retry:
                    log.warning("upstream failed", extra={"service": route.service, "error": str(exc)})
                    raise ApiError(502, f"The {route.service} service failed to answer") from exc
                # Once, preferably on another instance; this one goes to the back of the line (a
                # fresh connection to it may well work: only the pooled one was stale).
                may_retry = False
                candidates.append(instance)
                UPSTREAM_RETRIED.labels(route.service).inc()
                log.warning(
                    "upstream connection lost, retrying",
                    extra={"service": route.service, "instance": instance.url, "error": str(exc)},
                )
                continue
            except UpstreamError as exc:
                # The answer had started: whatever happened, the request is never sent again.
                pool.mark_up(instance)
                log.warning("upstream failed", extra={"service": route.service, "error": str(exc)})
                raise ApiError(502, f"The {route.service} service failed to answer") from exc
            pool.mark_up(instance)
            return web.Response(
                status=answer.status, body=answer.body, headers=without(answer.headers, STRIPPED_RESPONSE)
            )
        if time.monotonic() >= deadline:
            raise _timed_out(route, budget)
        raise ApiError(503, f"The {route.service} service is unavailable")

    forward.__name__ = f"forward_{route.service}"
    return forward


def _timed_out(route: Route, budget: float) -> ApiError:
    log.warning("upstream timed out", extra={"service": route.service, "timeout": budget})
    return ApiError(504, f"The {route.service} service did not answer in time")
