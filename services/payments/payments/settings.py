from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class PaymentsSettings(ServiceSettings):
    model_config = prefixed("payments")
    service: ClassVar[str] = "payments"

    port: int = 8004
