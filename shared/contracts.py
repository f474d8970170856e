"""Every message that crosses a service boundary: the envelope, events, and request/reply.

Each event has exactly one producer. The routing key of an event is `<type>.v<version>`. A
breaking change to a payload needs a new version (a new class with `version = 2`), and the
compatibility check in the test run compares the generated JSON Schemas with the checked-in
ones. Money is always integer minor units plus an ISO 4217 currency; tax rates are basis points
(2000 = 20%).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

Currency = str


class Contract(BaseModel):
    # A validation error never quotes the input: it would be logged and kept with a parked
    # message, and the input may hold a secret field.
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    type: ClassVar[str]
    version: ClassVar[int] = 1
    # Fields holding a secret (a payment token): never logged, and blanked in any copy of the
    # message kept after its delivery (a parked message, the dead-letter tool's output).
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def routing_key(cls) -> str:
        return f"{cls.type}.v{cls.version}"


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)  # as Contract's

    event_id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    producer: str
    correlation_id: str | None = None
    causation_id: uuid.UUID | None = None
    payload: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return f"{self.type}.v{self.version}"


def envelope_for(
    payload: Contract,
    producer: str,
    *,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        type=payload.type,
        version=payload.version,
        occurred_at=datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=payload.model_dump(mode="json"),
    )


# ---------------------------------------------------------------------------------------------
# Shared value objects


class LineQuantity(BaseModel):
    model_config = ConfigDict(frozen=True)
    variant_id: str
    sku: str = ""
    quantity: int = Field(ge=1)


class DiscountUse(BaseModel):
    """A discount a basket gets and its order uses: `amount` off the goods (minor units; the
    lines' `discount_total` add up to it); `free_shipping` waives the order's shipping line."""

    model_config = ConfigDict(frozen=True)
    discount_id: str
    name: str
    coupon: str | None = None
    amount: int = Field(ge=0)
    free_shipping: bool = False


class Address(BaseModel):
    model_config = ConfigDict(frozen=True)
    firstname: str | None = None
    lastname: str | None = None
    company_name: str | None = None
    address: str | None = None
    address_two: str | None = None
    address_three: str | None = None
    city: str | None = None
    county: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    phone: str | None = None
    email: str | None = None


class TransactionView(BaseModel):
    """A payment transaction as payments publishes it; orders keeps a projection for `include`."""

    model_config = ConfigDict(frozen=True)
    id: str
    order_id: str
    transaction_id: str
    merchant: str
    amount: int
    currency: Currency
    provider: str
    driver: str
    success: bool
    refund: bool
    status: str
    card_type: str | None = None
    last_four: str | None = None
    notes: str | None = None
    created_at: datetime


# ---------------------------------------------------------------------------------------------
# Events produced by basket


class BasketChanged(Contract):
    type = "basket.changed"
    basket_id: str
    currency: Currency
    sub_total: int
    tax_total: int
    total: int
    line_count: int
    # What its discounts take off (total = sub_total - discount_total + tax_total).
    discount_total: int = 0


class StockReserved(Contract):
    type = "stock.reserved"
    order_id: str
    attempt_id: uuid.UUID
    reservation_id: str
    expires_at: datetime


class StockRefused(Contract):
    type = "stock.refused"
    order_id: str
    attempt_id: uuid.UUID
    errors: dict[str, list[str]]


class StockReleased(Contract):
    type = "stock.released"
    order_id: str
    reservation_id: str
    reason: Literal["order-failed", "expired", "cancelled"]


class StockCommitted(Contract):
    type = "stock.committed"
    order_id: str
    reservation_id: str
    lines: list[LineQuantity]


# ---------------------------------------------------------------------------------------------
# Events produced by orders


class OrderCreated(Contract):
    type = "order.created"
    order_id: str
    basket_id: str
    status: str
    order_total: int
    currency: Currency


class OrderStatusChanged(Contract):
    """A status change that no other order event announces (admin, expiry, failure, dispatch, refund, void).

    Entering `payment-processing` is announced by `order.stock_requested` and placing by
    `order.placed` (which carries the status): each status change has exactly one announcement.
    `marks_paid`: this change records that the money of an order placed unpaid was received (an
    admin moved it to the paid status); shipping then opens the shipment it held.
    """

    type = "order.status_changed"
    order_id: str
    from_status: str
    to_status: str
    tracking_no: str | None = None
    marks_paid: bool = False


class OrderStockRequested(Contract):
    """Step 1 of the checkout saga: orders asks basket to reserve the order's lines."""

    type = "order.stock_requested"
    order_id: str
    attempt_id: uuid.UUID
    basket_id: str
    lines: list[LineQuantity]
    # The discounts the order uses: basket reserves a use of each with the stock (or refuses).
    discounts: list[DiscountUse] = Field(default_factory=list)
    # The order's contact email, for the discounts' per-email limits.
    email: str | None = None


class OrderChargeRequested(Contract):
    """Step 3 of the checkout saga: charge exactly this amount, once per attempt.

    The payment token is a secret: it lives only in this message and the outbox row that carries
    it (deleted once the broker confirmed); payments never stores it.
    """

    type = "order.charge_requested"
    secret_fields = frozenset({"payment_token"})
    order_id: str
    attempt_id: uuid.UUID
    amount: int = Field(gt=0)
    currency: Currency
    payment_type_id: str
    payment_token: str | None = None
    customer_email: str | None = None
    notes: str | None = None


class OrderPlaced(Contract):
    type = "order.placed"
    order_id: str
    attempt_id: uuid.UUID
    basket_id: str
    reference: str
    status: str
    order_total: int
    currency: Currency
    lines: list[LineQuantity]
    shipping_address: Address | None = None
    shipping_method: str | None = None
    shipping_price_id: str | None = None
    placed_at: datetime
    # False when the payment type's success is not money received (offline): the order is placed,
    # but shipping holds its shipment until an `order.status_changed` marks it paid.
    paid: bool = True


class OrderFailed(Contract):
    type = "order.failed"
    order_id: str
    attempt_id: uuid.UUID
    basket_id: str
    reason: str


# ---------------------------------------------------------------------------------------------
# Events produced by payments


class PaymentCaptured(Contract):
    type = "payment.captured"
    order_id: str
    attempt_id: uuid.UUID
    success_status: str
    transaction: TransactionView
    # Whether the type's success means the money was received (a card capture) or only a promise
    # to pay (offline).
    paid: bool = True


class PaymentDeclined(Contract):
    type = "payment.declined"
    order_id: str
    attempt_id: uuid.UUID
    reason: str
    transaction: TransactionView | None = None


class PaymentRefunded(Contract):
    type = "payment.refunded"
    order_id: str
    refunded_total: int
    fully_refunded: bool
    transaction: TransactionView


class PaymentVoided(Contract):
    type = "payment.voided"
    order_id: str
    transaction: TransactionView


# ---------------------------------------------------------------------------------------------
# Events produced by shipping


class ShipmentOpened(Contract):
    type = "shipment.opened"
    shipment_id: str
    order_id: str


class ShipmentDispatched(Contract):
    type = "shipment.dispatched"
    shipment_id: str
    order_id: str
    tracking_no: str | None = None
    dispatched_at: datetime


# ---------------------------------------------------------------------------------------------
# Events produced by customers


class CustomerRegistered(Contract):
    """A customer account was created (`POST /customers`): who it is and how to reach them."""

    type = "customer.registered"
    customer_id: str
    email: str
    firstname: str
    lastname: str
    company_name: str | None = None
    registered_at: datetime


class CustomerPasswordChanged(Contract):
    """A customer changed their password; every sign-in session of theirs was ended with it."""

    type = "customer.password_changed"
    customer_id: str
    changed_at: datetime


# ---------------------------------------------------------------------------------------------
# Request/reply: queries for another service's current data


class BasketSnapshotLine(BaseModel):
    variant_id: str
    product_id: str
    sku: str
    description: str
    option: str | None = None
    quantity: int
    unit_price: int
    unit_qty: int
    tax_rate_bp: int
    line_total: int
    tax_total: int
    discount_total: int = 0
    weight_grams: int = 0
    requires_shipping: bool = True


class BasketSnapshot(BaseModel):
    id: str
    currency: Currency
    used: bool
    sub_total: int
    tax_total: int
    discount_total: int
    total: int
    weight_grams: int
    lines: list[BasketSnapshotLine]
    # The customer the basket belongs to; None for a guest's basket. Its order becomes theirs.
    customer_id: str | None = None
    # The discounts that apply (their amounts are in the lines' `discount_total`).
    discounts: list[DiscountUse] = Field(default_factory=list)
    free_shipping: bool = False
    # The prices are the catalogue's, in `base_currency`, converted at `exchange_rate` (units of
    # `currency` per unit of the base, a decimal string) when the basket was priced; "1" and the
    # basket's own currency when it is the base. The order keeps both.
    base_currency: Currency | None = None
    exchange_rate: str = Field(default="1", pattern=r"^[0-9]{1,10}(\.[0-9]{1,8})?$")


class GetBasketSnapshot(Contract):
    type = "basket.snapshot"
    basket_id: str
    # Who asks (the signed-in customer creating the order; None for a guest): another customer's
    # basket is answered as unknown (`basket` None), as it is on the basket's own routes.
    customer_id: str | None = None


class BasketSnapshotReply(Contract):
    type = "basket.snapshot.reply"
    basket: BasketSnapshot | None = None


class ShippingMethodView(BaseModel):
    id: str
    type: str
    name: str
    description: str | None = None
    code: str | None = None


class ShippingZoneView(BaseModel):
    id: str
    name: str


class ShippingPriceView(BaseModel):
    id: str
    rate: int
    tax: int
    fixed: bool
    min_basket: int
    min_weight: int
    weight_unit: str = "kg"
    currency: Currency
    method: ShippingMethodView
    zone: ShippingZoneView


class QuoteShipping(Contract):
    """The shipping prices that apply to an order now (optionally: does this one price apply)."""

    type = "shipping.quote"
    order_id: str
    country: str
    zip: str | None = None
    sub_total: int
    weight_grams: int
    currency: Currency
    price_id: str | None = None


class ShippingQuoteReply(Contract):
    type = "shipping.quote.reply"
    prices: list[ShippingPriceView]


class ResolvePayment(Contract):
    """Resolve the payment type for a checkout and validate its token without charging."""

    type = "payment.resolve"
    payment_type_id: str | None = None
    payment_type: str | None = None
    payment_token: str | None = None


class PaymentTypeView(BaseModel):
    id: str
    name: str
    handle: str
    driver: str
    success_status: str


class ResolvePaymentReply(Contract):
    type = "payment.resolve.reply"
    payment_type: PaymentTypeView | None = None
    errors: dict[str, list[str]] = Field(default_factory=dict)


class GetCustomerAddress(Contract):
    """One address of a customer's book, asked for as that customer: orders sets an order's address
    from it. Another customer's address is answered as unknown (`address` None)."""

    type = "customer.address"
    customer_id: str
    address_id: str


class CustomerAddressReply(Contract):
    type = "customer.address.reply"
    address: Address | None = None


# ---------------------------------------------------------------------------------------------
# The registry: who produces and who consumes what


@dataclass(frozen=True)
class EventSpec:
    model: type[Contract]
    producer: str
    consumers: tuple[str, ...]
    # Published for subscribers outside this system; no internal queue has to be bound.
    external: bool = False

    @property
    def routing_key(self) -> str:
        return self.model.routing_key()


@dataclass(frozen=True)
class RequestSpec:
    request: type[Contract]
    reply: type[Contract]
    responder: str
    callers: tuple[str, ...]


EVENTS: dict[str, EventSpec] = {
    spec.routing_key: spec
    for spec in (
        EventSpec(BasketChanged, "basket", (), external=True),
        EventSpec(StockReserved, "basket", ("orders",)),
        EventSpec(StockRefused, "basket", ("orders",)),
        EventSpec(StockReleased, "basket", (), external=True),
        EventSpec(StockCommitted, "basket", (), external=True),
        EventSpec(OrderCreated, "orders", (), external=True),
        EventSpec(OrderStatusChanged, "orders", ("shipping",)),
        EventSpec(OrderStockRequested, "orders", ("basket",)),
        EventSpec(OrderChargeRequested, "orders", ("payments",)),
        EventSpec(OrderPlaced, "orders", ("basket", "shipping")),
        EventSpec(OrderFailed, "orders", ("basket",)),
        EventSpec(PaymentCaptured, "payments", ("orders",)),
        EventSpec(PaymentDeclined, "payments", ("orders",)),
        EventSpec(PaymentRefunded, "payments", ("orders",)),
        EventSpec(PaymentVoided, "payments", ("orders",)),
        EventSpec(ShipmentOpened, "shipping", (), external=True),
        EventSpec(ShipmentDispatched, "shipping", ("orders",)),
        EventSpec(CustomerRegistered, "customers", (), external=True),
        EventSpec(CustomerPasswordChanged, "customers", (), external=True),
    )
}

REQUESTS: dict[str, RequestSpec] = {
    spec.request.type: spec
    for spec in (
        RequestSpec(GetBasketSnapshot, BasketSnapshotReply, "basket", ("orders",)),
        RequestSpec(QuoteShipping, ShippingQuoteReply, "shipping", ("orders",)),
        RequestSpec(ResolvePayment, ResolvePaymentReply, "payments", ("orders",)),
        RequestSpec(GetCustomerAddress, CustomerAddressReply, "customers", ("orders",)),
    )
}


REDACTED = "[redacted]"


def redacted(body: bytes) -> bytes:
    """An event's message body with the payload's secret fields blanked (for whatever keeps a
    copy of it after its delivery). A body that is not an event of the registry is returned as it
    is: it cannot carry a field the registry marks secret."""
    try:
        data = orjson.loads(body)
        spec = EVENTS.get(f"{data['type']}.v{data['version']}")
        payload = data["payload"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body
    if spec is None or not isinstance(payload, dict):
        return body
    secrets = spec.model.secret_fields & payload.keys()
    if not secrets:
        return body
    data["payload"] = payload | {name: REDACTED for name in secrets if payload[name] is not None}
    return orjson.dumps(data)


def events_consumed_by(service: str) -> list[EventSpec]:
    return [spec for spec in EVENTS.values() if service in spec.consumers]
