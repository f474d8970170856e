from aiohttp import web

from shared import http, idempotency, runtime
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
        ]
    )
    runtime.add_health_routes(app)
    return app
