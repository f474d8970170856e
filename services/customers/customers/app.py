from aiohttp import web

from customers import consumers, sweepers
from customers.credentials import PASSWORDS, Passwords
from customers.routes import OPERATIONS
from customers.settings import CustomersSettings
from shared import operations, runtime


def create_app(settings: CustomersSettings) -> web.Application:
    app = runtime.create_service_app(
        settings,
        routes=operations.routes(OPERATIONS),
        responders=consumers.responders,
        background=[sweepers.purger(settings)],
    )
    app[PASSWORDS] = Passwords(
        memory_kib=settings.password_hash_memory_kib,
        time_cost=settings.password_hash_time_cost,
        concurrency=settings.password_hash_concurrency,
    )
    return app
