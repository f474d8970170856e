from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class BasketSettings(ServiceSettings):
    model_config = prefixed("basket")
    service: ClassVar[str] = "basket"

    port: int = 8001

    base_currency: str = "GBP"
    # How long a checkout's stock reservation holds before it is released (seconds).
    reservation_ttl: float = 15 * 60
    # How often the expiry sweep looks for reservations past their time (seconds).
    reservation_sweep_interval: float = 5.0
    reservation_sweep_batch: int = 100
    products_per_page: int = 50
