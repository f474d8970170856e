from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class OrdersSettings(ServiceSettings):
    model_config = prefixed("orders")
    service: ClassVar[str] = "orders"

    port: int = 8002

    # `<prefix>YYYY-MM-NNNN`: an empty prefix by default, e.g. "CANDY-" for a shop's own scheme.
    reference_prefix: str = ""
    # How long `POST /orders/process` waits for the saga's outcome before answering 202.
    process_deadline: float = 15.0
    # The slow fallback poll of the outcome wait, should a NOTIFY be missed.
    process_poll_interval: float = 1.0
    # An attempt still waiting for its stock reservation after this long is failed (no charge
    # was requested yet, so failing it is safe). Attempts past the charge request never time
    # out here: only payments knows whether money moved, and its answer always arrives.
    stock_reservation_timeout: float = 120.0
    attempt_sweep_interval: float = 10.0
