from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class ShippingSettings(ServiceSettings):
    model_config = prefixed("shipping")
    service: ClassVar[str] = "shipping"

    port: int = 8003
