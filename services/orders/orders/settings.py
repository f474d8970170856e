from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class OrdersSettings(ServiceSettings):
    model_config = prefixed("orders")
    service: ClassVar[str] = "orders"

    port: int = 8002
