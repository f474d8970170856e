"""Request bodies and query models at the HTTP edge (the responses are in `views.py`).

Requests are validated here (types and shapes); the business rules (stock, min_qty...) live in
`domain.py` so that their messages are upstream's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from basket.domain import MAX_QUANTITY, Backorder
from shared.http import Meta


def _integer(value: Any) -> Any:
    # JSON true is not a quantity, although Python would happily count it as 1.
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer")
    return value


Int = Annotated[int, BeforeValidator(_integer)]
Sku = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]
# Up to 9,999,999.99: any basket's total in minor units stays far below 2**53, where the wire's
# JSON numbers stop being exact.
Price = Annotated[Decimal, Field(ge=0, max_digits=9, decimal_places=2)]


class Body(BaseModel):
    # NUL characters are refused for every body and query by shared.http before this runs.
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------------------------------------
# Requests: catalogue (admin)


class VariantCreate(Body):
    sku: Sku
    name: str | None = Field(default=None, max_length=255)
    options: dict[str, str] = Field(default_factory=dict)
    price: Price = Field(description="Ex-tax price in major units (12.5 = 12.50)")
    tax_rate_bp: Int = Field(default=2000, ge=0, le=10_000, description="Tax rate in basis points (2000 = 20%)")
    inventory: Int = Field(default=0, ge=0, le=1_000_000_000)
    incoming: Int = Field(default=0, ge=0, le=1_000_000_000)
    backorder: Backorder = "in-stock"
    min_qty: Int = Field(default=1, ge=1, le=MAX_QUANTITY)
    max_qty: Int = Field(default=0, ge=0, le=MAX_QUANTITY, description="0: no maximum")
    min_batch: Int = Field(default=1, ge=1, le=MAX_QUANTITY)
    unit_qty: Int = Field(default=1, ge=1, le=MAX_QUANTITY)
    weight_grams: Int = Field(default=0, ge=0, le=10_000_000)
    requires_shipping: bool = True
    purchasable: bool = True


class ProductCreate(Body):
    name: str = Field(min_length=1, max_length=255)
    variants: list[VariantCreate] = Field(min_length=1, max_length=100)


class VariantUpdate(Body):
    sku: Sku | None = None
    name: str | None = Field(default=None, max_length=255)
    options: dict[str, str] | None = None
    price: Price | None = None
    tax_rate_bp: Int | None = Field(default=None, ge=0, le=10_000)
    inventory: Int | None = Field(default=None, ge=0, le=1_000_000_000)
    incoming: Int | None = Field(default=None, ge=0, le=1_000_000_000)
    backorder: Backorder | None = None
    min_qty: Int | None = Field(default=None, ge=1, le=MAX_QUANTITY)
    max_qty: Int | None = Field(default=None, ge=0, le=MAX_QUANTITY)
    min_batch: Int | None = Field(default=None, ge=1, le=MAX_QUANTITY)
    unit_qty: Int | None = Field(default=None, ge=1, le=MAX_QUANTITY)
    weight_grams: Int | None = Field(default=None, ge=0, le=10_000_000)
    requires_shipping: bool | None = None
    purchasable: bool | None = None


class InventoryUpdate(Body):
    inventory: Int = Field(ge=0, le=1_000_000_000)


class ProductsQuery(Body):
    page: Int = Field(default=1, ge=1, le=100_000)
    per_page: Int | None = Field(default=None, ge=1, le=100)
    limit: Int | None = Field(default=None, ge=1, le=100)


# ---------------------------------------------------------------------------------------------
# Requests: baskets


class VariantQuantity(Body):
    id: str = Field(max_length=64)
    quantity: Int
    meta: Meta | None = None


class CreateBasket(Body):
    basket_id: str | None = Field(default=None, max_length=64)
    variants: list[VariantQuantity] = Field(default_factory=list, max_length=200)
    currency: str | None = Field(default=None, max_length=3)
    meta: Meta | None = None


class AddLines(Body):
    basket_id: str | None = Field(default=None, max_length=64)
    variants: list[VariantQuantity] = Field(min_length=1, max_length=200)
    meta: Meta | None = None


class LineQuantity(Body):
    quantity: Int


class LineQuantityChange(Body):
    quantity: Int = 1


class LineRef(Body):
    id: str = Field(max_length=64)


class DeleteLines(Body):
    lines: list[LineRef] = Field(min_length=1, max_length=200)


def _present(value: Any) -> Any:
    # Upstream's `required`: a key set to null is not a value (and would read as absent).
    if value is None:
        raise ValueError("The value field is required.")
    return value


class BasketMeta(Body):
    """Upstream's body: one key set (or replaced) in the basket's meta, the others kept."""

    key: str = Field(min_length=1, max_length=255)
    value: Annotated[Any, BeforeValidator(_present)] = Field(description="Any JSON value but null")


class ResolveBasket(Body):
    basket_id: str = Field(max_length=64, description="The guest basket to merge into the current one")
    merge: bool = Field(
        default=True,
        description="false: the guest basket becomes the current one instead (upstream's overwrite), unmerged",
    )


class SaveBasket(Body):
    name: str = Field(min_length=1, max_length=255, pattern=r"\S")


class SavedBasketsQuery(Body):
    page: Int = Field(default=1, ge=1, le=100_000)
    per_page: Int = Field(default=25, ge=1, le=100)


class UpdateBasket(Body):
    # Optional: GetCandy's published client sends this request without a body (no change).
    currency: str | None = Field(
        default=None, max_length=3, description="An enabled currency's code (GET /currencies); none: no change"
    )


# ---------------------------------------------------------------------------------------------
# Requests: discounts (admin) and a basket's coupon


def _locale_name(value: Any) -> Any:
    # Upstream sent a name per locale ({"en": "Summer sale"}): the English one, else the first.
    if isinstance(value, dict) and value:
        return value.get("en", next(iter(value.values())))
    return value


DiscountName = Annotated[
    str,
    BeforeValidator(_locale_name),
    Field(min_length=1, max_length=255, pattern=r"\S"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 255},
                {"type": "object", "additionalProperties": {"type": "string"}, "description": "Per locale (upstream)"},
            ]
        }
    ),
]


def _utc_moment(value: datetime) -> datetime:
    # Upstream's examples carry no zone ("2019-06-04 14:27:02"): read as UTC. A moment that UTC
    # cannot hold (year 9999 west of Greenwich) is refused here, not by the database driver.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("The date is out of range.") from exc


Moment = Annotated[datetime, AfterValidator(_utc_moment)]
Coupon = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
Percentage = Annotated[Decimal, Field(gt=0, le=100, max_digits=5, decimal_places=2)]
Amount = Annotated[Decimal, Field(gt=0, max_digits=9, decimal_places=2)]
Limit = Annotated[Int, Field(ge=1, le=1_000_000_000)]
Priority = Annotated[Int, Field(ge=-1000, le=1000)]
Ids = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=200)]


class DiscountCreate(Body):
    """A discount: a coupon (`coupon` set) or automatic. Times without a zone are UTC; `end_at` is
    exclusive. At least one reward: `percentage`, `fixed_amount` or `free_shipping`."""

    name: DiscountName
    coupon: Coupon | None = Field(default=None, description="Unique whatever its case; null: automatic")
    start_at: Moment | None = None
    end_at: Moment | None = None
    status: bool = Field(default=True, description="Enabled")
    priority: Priority = Field(default=0, description="Higher first")
    stop_rules: bool = Field(default=False, description="No discount after this one when it applies")
    usage_limit: Limit | None = Field(default=None, description="Orders in all; null: no limit")
    usage_limit_per_email: Limit | None = Field(default=None, description="Orders per contact email (coupons only)")
    min_basket: Price = Field(default=Decimal(0), description="Minimum sub-total before tax, in major units")
    product_ids: Ids = Field(default_factory=list, description="Applies to these products' lines (with variant_ids)")
    variant_ids: Ids = Field(default_factory=list, description="Applies to these variants' lines; both empty: all")
    percentage: Percentage | None = Field(default=None, description="Percent off the eligible lines (12.5)")
    fixed_amount: Amount | None = Field(default=None, description="Off the eligible lines, in major units")
    free_shipping: bool = False


class DiscountUpdate(Body):
    """The fields to change (the others are kept); null clears a field that may be empty.
    `version`: the one read, refused with 409 if the discount changed since."""

    name: DiscountName | None = None
    coupon: Coupon | None = None
    start_at: Moment | None = None
    end_at: Moment | None = None
    status: bool | None = None
    priority: Priority | None = None
    stop_rules: bool | None = None
    usage_limit: Limit | None = None
    usage_limit_per_email: Limit | None = None
    min_basket: Price | None = None
    product_ids: Ids | None = None
    variant_ids: Ids | None = None
    percentage: Percentage | None = None
    fixed_amount: Amount | None = None
    free_shipping: bool | None = None
    version: Int | None = Field(default=None, ge=1, description="Compare-and-set: the version last read")


class DiscountsQuery(Body):
    page: Int = Field(default=1, ge=1, le=100_000)
    per_page: Int | None = Field(default=None, ge=1, le=100)


class ApplyCoupon(Body):
    coupon: str = Field(min_length=1, max_length=64)


# ---------------------------------------------------------------------------------------------
# Requests: currencies (admin)

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), AfterValidator(str.upper)]
# numeric(18, 8) holds ten digits before the point; a million units per unit of the base is more
# than any currency needs against GBP (about 33,000 VND), and keeps converted totals within bigint.
ExchangeRate = Annotated[Decimal, Field(gt=0, le=1_000_000, max_digits=18, decimal_places=8)]
CurrencyName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"\S")]
PriceFormat = Annotated[str, Field(min_length=1, max_length=64, pattern=r"\{price\}")]
Separator = Annotated[str, Field(max_length=4)]


class CurrencyCreate(Body):
    """A currency baskets may be in. `exchange_rate`: units of it per unit of the base currency
    (prices are converted at it); `format`: how a storefront shows a price (`{price}` is replaced)."""

    code: CurrencyCode = Field(description="ISO 4217")
    name: CurrencyName | None = Field(default=None, description="Default: the English name of the code")
    exchange_rate: ExchangeRate
    format: PriceFormat | None = Field(default=None, description="Default: the currency's symbol then {price}")
    decimal_point: Separator = "."
    thousand_point: Separator = ","
    enabled: bool = True
    default: bool = Field(default=False, description="The currency of a new basket that names none")


class CurrencyUpdate(Body):
    """The fields to change (the others are kept). `version`: the one read, refused with 409 if
    the currency changed since."""

    name: CurrencyName | None = None
    exchange_rate: ExchangeRate | None = None
    format: PriceFormat | None = None
    decimal_point: Separator | None = None
    thousand_point: Separator | None = None
    enabled: bool | None = None
    default: bool | None = None
    version: Int | None = Field(default=None, ge=1, description="Compare-and-set: the version last read")


class CurrenciesQuery(Body):
    page: Int = Field(default=1, ge=1, le=100_000)
    per_page: Int = Field(default=25, ge=1, le=100)
