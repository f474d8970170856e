from aiohttp import web

from shared import operations, runtime
from shipping import consumers
from shipping.routes import OPERATIONS
from shipping.settings import ShippingSettings


def create_app(settings: ShippingSettings) -> web.Application:
    return runtime.create_service_app(
        settings,
        routes=operations.routes(OPERATIONS),
        subscriptions=consumers.subscriptions,
        responders=consumers.responders,
    )
