"""Edge middlewares of the gateway: CORS and the per-client rate limit."""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from gateway.settings import GatewaySettings
from shared.http import REQUEST_ID_HEADER, ApiError, Handler, error_response

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# ---------------------------------------------------------------------------------------------
# CORS

CORS_METHODS = "GET, POST, PUT, DELETE"
# X-CANDY-CURRENCY: GetCandy storefronts name the currency to show prices in with it.
CORS_HEADERS = "Accept, Authorization, Content-Type, Idempotency-Key, X-Request-Id, X-CANDY-CURRENCY"
# Headers a browser script may read on a cross-origin response.
CORS_EXPOSED = f"{REQUEST_ID_HEADER}, Retry-After, Idempotent-Replayed, Location"


def cors_middleware(settings: GatewaySettings) -> Callable:
    origins = frozenset(o.rstrip("/") for o in settings.cors_origins if o != "*")
    any_origin = "*" in settings.cors_origins
    max_age = str(settings.cors_max_age)

    def allowed(origin: str | None) -> bool:
        return origin is not None and (any_origin or origin in origins)

    def add_vary(headers) -> None:
        # The answer depends on Origin: a shared cache must not serve one origin's answer to another.
        if any_origin:
            return
        vary = headers.get("Vary")
        if not vary:
            headers["Vary"] = "Origin"
        elif "origin" not in vary.lower():
            headers["Vary"] = f"{vary}, Origin"

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
            # A preflight is answered here for every path: the services never see OPTIONS.
            if not allowed(origin):
                response = error_response(403, "Origin not allowed")
            else:
                response = web.Response(status=204)
                response.headers.update(
                    {
                        "Access-Control-Allow-Origin": "*" if any_origin else origin,
                        "Access-Control-Allow-Methods": CORS_METHODS,
                        "Access-Control-Allow-Headers": CORS_HEADERS,
                        "Access-Control-Max-Age": max_age,
                    }
                )
            add_vary(response.headers)
            return response
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects only: errors became responses further in
            headers = exc.headers
            if allowed(origin):
                headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin  # type: ignore[assignment]
                headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
            add_vary(headers)
            raise
        if allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin  # type: ignore[assignment]
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        add_vary(response.headers)
        return response

    return cors


# ---------------------------------------------------------------------------------------------
# Rate limit

EXEMPT_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


class TokenBuckets:
    """One token bucket per client: `rate` tokens a second, holding at most `burst`.

    Kept in memory, per gateway process (N replicas allow N times the rate; set the rate for one
    replica's share). The least recently seen clients are forgotten past `max_clients`, which
    only ever errs towards letting a request through.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000
    ):
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until a token is available."""
        now = self.clock()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def parse_networks(values: list[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: web.Request, trusted: tuple[IpNetwork, ...]) -> str:
    """The client a request counts against.

    The peer address, unless the peer is a trusted proxy: then X-Forwarded-For is read from the
    right (the hop our proxy appended) and the first hop that is not itself a trusted proxy is the
    client. Hops further left were written by the client and are never believed, so a client
    cannot pick the bucket it is counted in.
    """
    peer = request.remote or "unknown"
    if not trusted:
        return peer
    peer_ip = _ip(peer)
    if peer_ip is None or not any(peer_ip in net for net in trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break  # junk in the chain: count against the proxy rather than believe a made-up name
        if not any(hop_ip in net for net in trusted):
            return str(hop_ip)
    return peer


CLIENT = web.RequestKey("client", str)  # the resolved client address, also forwarded upstream


# Parsing an address costs more than the rest of the limit: the same few clients come back, a
# bounded cache answers them.
@functools.lru_cache(maxsize=4096)
def bucket_of(client: str) -> str:
    """An IPv6 client is its /64: one host (one subscriber line) holds a whole /64 to rotate through."""
    address = _ip(client)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped) if isinstance(address, ipaddress.IPv6Address) else client


def rate_limit_middleware(settings: GatewaySettings, clock: Callable[[], float] = time.monotonic) -> Callable:
    trusted = parse_networks(settings.trusted_proxies)
    buckets = None
    if settings.rate_limit_rate > 0:
        buckets = TokenBuckets(settings.rate_limit_rate, settings.rate_limit_burst, clock)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = client_address(request, trusted)
        request[CLIENT] = client
        if buckets is not None and request.path not in EXEMPT_PATHS:
            wait = buckets.take(bucket_of(client))
            if wait > 0:
                raise ApiError(429, headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return await handler(request)

    return rate_limit
