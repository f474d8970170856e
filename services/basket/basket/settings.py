from typing import ClassVar

from aiohttp import web
from pydantic import field_validator

from shared import money, runtime
from shared.settings import ServiceSettings, prefixed


class BasketSettings(ServiceSettings):
    model_config = prefixed("basket")
    service: ClassVar[str] = "basket"

    port: int = 8001

    # The currency catalogue prices and discounts are entered in; other currencies are converted
    # from it. Fixed for the life of a shop: changing it would re-read every stored price.
    base_currency: str = "GBP"
    # How long a checkout's stock reservation holds before it is released (seconds).
    reservation_ttl: float = 15 * 60
    # How often the expiry sweep looks for reservations past their time (seconds).
    reservation_sweep_interval: float = 5.0
    reservation_sweep_batch: int = 100
    products_per_page: int = 50

    @field_validator("base_currency")
    @classmethod
    def _iso_code(cls, value: str) -> str:
        if not money.is_currency(value):
            raise ValueError("must be an ISO 4217 currency code in capitals (GBP)")
        return value


def settings_of(request: web.Request) -> BasketSettings:
    settings = request.app[runtime.SETTINGS]
    assert isinstance(settings, BasketSettings)
    return settings
