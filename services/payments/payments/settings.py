from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class PaymentsSettings(ServiceSettings):
    model_config = prefixed("payments")
    service: ClassVar[str] = "payments"

    port: int = 8004

    # The provider `GET /payments/provider` describes (a driver name of `providers.DRIVERS`).
    default_provider: str = "sandbox"
    merchant: str = "commerce"
    client_token_ttl: int = 3600
    # A second, small pool for work that must commit on its own while an event handler's
    # transaction is open (the charge intent, the sandbox processor's records). Separate from the
    # main pool so that handlers holding main connections can never starve it.
    side_pool_max: int = 4
