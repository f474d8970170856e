from aiohttp import web

from payments import consumers, sweepers
from payments.providers import side_resources
from payments.routes import OPERATIONS
from payments.settings import PaymentsSettings
from shared import operations, runtime


def create_app(settings: PaymentsSettings) -> web.Application:
    return runtime.create_service_app(
        settings,
        routes=operations.routes(OPERATIONS),
        subscriptions=consumers.subscriptions,
        responders=consumers.responders,
        resources=[side_resources(settings)],
        background=[sweepers.reconciler(settings)],
    )
