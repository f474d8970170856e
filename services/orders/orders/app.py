from aiohttp import web

from orders import consumers, handlers, saga
from orders.caches import CACHES, Caches
from orders.settings import OrdersSettings
from shared import http, idempotency, runtime


def create_app(settings: OrdersSettings) -> web.Application:
    app = web.Application(
        middlewares=[runtime.access_log_middleware, *http.standard_middlewares(), idempotency.middleware()]
    )
    app[runtime.SETTINGS] = settings
    app[CACHES] = Caches()
    app.cleanup_ctx.extend(
        [
            runtime.database(settings),
            runtime.broker(settings),
            runtime.outbox_relay(settings),
            runtime.rpc_client(settings),
            saga.outcome_waiter(settings),
            runtime.event_consumer(settings, consumers.subscriptions(settings)),
            saga.attempt_sweeper(settings),
        ]
    )
    app.add_routes(handlers.ROUTES)
    runtime.add_health_routes(app)
    return app
