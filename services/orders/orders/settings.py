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

    # The seller block of invoices (`GET /orders/{id}/invoice`): the shop's legal name, postal
    # address (lines separated by "\n") and VAT number.
    seller_name: str = "Demo Store Ltd"
    seller_address: str = "1 Example Street\nLondon\nEC1A 1AA\nUnited Kingdom"
    seller_vat_no: str = ""
    # A TrueType font with the characters of any name a shopper types (Debian's fonts-dejavu-core,
    # installed in the image). Without it, characters outside Latin-1 print as "?".
    invoice_font: str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
