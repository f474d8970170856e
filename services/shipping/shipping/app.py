from aiohttp import web

from shared import http, idempotency, runtime
from shipping import consumers, handlers
from shipping.settings import ShippingSettings


def create_app(settings: ShippingSettings) -> web.Application:
    app = web.Application(
        middlewares=[runtime.access_log_middleware, *http.standard_middlewares(), idempotency.middleware()]
    )
    app[runtime.SETTINGS] = settings
    app.cleanup_ctx.extend(
        [
            runtime.database(settings),
            runtime.broker(settings),
            runtime.outbox_relay(settings),
            runtime.event_consumer(settings, consumers.SUBSCRIPTIONS),
            runtime.rpc_server(settings, consumers.rpc_handlers),
        ]
    )
    runtime.add_health_routes(app)
    app.router.add_routes(handlers.ROUTES)
    return app
