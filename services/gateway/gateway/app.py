import json
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.docs import add_docs_routes
from gateway.edge import cors_middleware, rate_limit_middleware
from gateway.handlers import UPSTREAM, forwarder
from gateway.routes import OPENAPI_PATH, load_document, routes_from
from gateway.settings import UPSTREAM_SERVICES, GatewaySettings
from gateway.upstream_http import UpstreamClient
from gateway.upstreams import UpstreamPool
from shared import http, runtime
from shared.operations import PREFIX


def upstream_client(settings: GatewaySettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[UPSTREAM] = UpstreamClient(limit=settings.upstream_connections, keepalive=30.0)
        yield
        app[UPSTREAM].close()

    return ctx


def openapi_handler(document: bytes):
    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json", headers={"Cache-Control": "no-cache"})

    return openapi


def create_app(settings: GatewaySettings) -> web.Application:
    # standard_middlewares() is [request_id, error]; CORS sits between them so that a preflight
    # carries a request id and every error body, a 429 included, carries the CORS headers that
    # let a browser script read it. The rate limit is innermost, so its 429 is a GetCandy body.
    request_id_mw, error_mw = http.standard_middlewares()
    app = web.Application(
        middlewares=[
            runtime.access_log_middleware,
            request_id_mw,
            cors_middleware(settings),
            error_mw,
            rate_limit_middleware(settings),
        ],
        client_max_size=settings.max_body_bytes,
        # Bodies go up as the client encoded them (Content-Encoding included): the service decodes
        # them within its own limit. The gateway's limit is on the bytes it receives.
        handler_args={"auto_decompress": False},
    )
    app[runtime.SETTINGS] = settings
    app.cleanup_ctx.append(upstream_client(settings))
    # One pool per service, shared by its routes: what one request learns about an instance
    # being down, the next one (any route) uses; its in-flight limit counts every route's requests.
    pools = {
        service: UpstreamPool(
            service,
            settings.upstreams(service),
            settings.upstream_down_for,
            max_in_flight=settings.upstream_max_in_flight,
            admission_wait=settings.upstream_admission_wait,
        )
        for service in UPSTREAM_SERVICES
    }
    # The route table comes from the same read of the checked-in document as the one served.
    # One resource per path, so that a wrong method is a 405 whose Allow lists every method of
    # the path; registered in `path_order`, a literal segment is tried before a parameter.
    document = load_document()
    resources: dict[str, web.Resource] = {}
    for route in routes_from(json.loads(document)):
        resource = resources.get(route.path) or app.router.add_resource(PREFIX + route.path)
        resources[route.path] = resource
        resource.add_route(route.method, forwarder(route, settings, pools[route.service]))
    app.router.add_route("GET", PREFIX + OPENAPI_PATH, openapi_handler(document))
    add_docs_routes(app)
    runtime.add_health_routes(app)
    return app
