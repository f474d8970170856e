from aiohttp import web

from payments import consumers, handlers
from payments.resources import side_resources
from payments.settings import PaymentsSettings
from shared import http, idempotency, runtime


def create_app(settings: PaymentsSettings) -> web.Application:
    app = web.Application(
        middlewares=[runtime.access_log_middleware, *http.standard_middlewares(), idempotency.middleware()]
    )
    app[runtime.SETTINGS] = settings
    app.cleanup_ctx.extend(
        [
            runtime.database(settings),
            side_resources(settings),
            runtime.broker(settings),
            runtime.outbox_relay(settings),
            runtime.event_consumer(settings, consumers.subscriptions(app)),
            runtime.rpc_server(settings, consumers.rpc_handlers),
        ]
    )
    runtime.add_health_routes(app)
    app.router.add_routes(handlers.ROUTES)
    return app
