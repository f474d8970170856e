from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class BasketSettings(ServiceSettings):
    model_config = prefixed("basket")
    service: ClassVar[str] = "basket"

    port: int = 8001
