from aiohttp import web

from basket import consumers, currencies, sweepers
from basket.routes import OPERATIONS
from basket.settings import BasketSettings
from shared import operations, runtime


def create_app(settings: BasketSettings) -> web.Application:
    return runtime.create_service_app(
        settings,
        routes=operations.routes(OPERATIONS),
        resources=[currencies.base_currency_row(settings)],
        subscriptions=consumers.subscriptions,
        responders=consumers.responders,
        background=[sweepers.reservation_sweeper(settings)],
    )
