from aiohttp import web

from orders import consumers, outcomes, sweepers
from orders.caches import caches
from orders.routes import OPERATIONS
from orders.settings import OrdersSettings
from shared import operations, runtime


def create_app(settings: OrdersSettings) -> web.Application:
    return runtime.create_service_app(
        settings,
        routes=operations.routes(OPERATIONS),
        subscriptions=consumers.subscriptions,
        asks_other_services=True,
        resources=[caches, outcomes.outcome_waiter(settings)],
        background=[sweepers.attempt_sweeper(settings)],
    )
