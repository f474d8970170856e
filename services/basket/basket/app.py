from aiohttp import web

from basket import consumers
from basket.handlers import ROUTES
from basket.settings import BasketSettings
from shared import http, idempotency, runtime


def create_app(settings: BasketSettings) -> web.Application:
    app = web.Application(
        middlewares=[runtime.access_log_middleware, *http.standard_middlewares(), idempotency.middleware()]
    )
    app[runtime.SETTINGS] = settings
    app.cleanup_ctx.extend(
        [
            runtime.database(settings),
            runtime.broker(settings),
            runtime.outbox_relay(settings),
            runtime.event_consumer(settings, consumers.subscriptions(settings)),
            runtime.rpc_server(settings, consumers.rpc_handlers),
            consumers.reservation_sweeper(settings),
        ]
    )
    runtime.add_health_routes(app)
    app.add_routes(ROUTES)
    return app
