from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.handlers import SESSION, forwarder
from gateway.routes import PREFIX, ROUTES
from gateway.settings import GatewaySettings
from shared import http, runtime


def http_session(settings: GatewaySettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=settings.upstream_connections, keepalive_timeout=30)
        app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        yield
        await app[SESSION].close()

    return ctx


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(
        middlewares=[runtime.access_log_middleware, *http.standard_middlewares()],
        client_max_size=settings.max_body_bytes,
    )
    app[runtime.SETTINGS] = settings
    app.cleanup_ctx.append(http_session(settings))
    for route in ROUTES:
        app.router.add_route(route.method, PREFIX + route.path, forwarder(route, settings))
    runtime.add_health_routes(app)
    return app
