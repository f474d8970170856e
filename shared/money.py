"""Money: integer minor units inside the system, exact conversions at the edge.

Basket amounts go over the wire as decimal numbers in major units (upstream GetCandy did so);
they are produced from integers here, never through float arithmetic.
"""

from __future__ import annotations

from decimal import Decimal

MINOR_UNITS = {"GBP": 2, "EUR": 2, "USD": 2, "JPY": 0}
DEFAULT_TAX_RATE_BP = 2000  # VAT 20%, in basis points


def exponent(currency: str) -> int:
    return MINOR_UNITS.get(currency.upper(), 2)


def to_major(amount: int, currency: str = "GBP") -> Decimal:
    """1250 GBP minor units -> Decimal('12.50'), exactly."""
    return Decimal(amount).scaleb(-exponent(currency))


def to_major_number(amount: int, currency: str = "GBP") -> int | float:
    """The JSON number upstream sent (12.5); exact for any amount below 2**53 minor units."""
    major = to_major(amount, currency)
    return int(major) if major == major.to_integral_value() else float(major)


def from_major(value: Decimal | int | str, currency: str = "GBP") -> int:
    """Decimal('12.50') -> 1250; refuses fractions of a minor unit."""
    scaled = Decimal(str(value)).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {exponent(currency)} decimal places")
    return int(scaled)


def tax(amount: int, rate_bp: int) -> int:
    """Tax on an ex-tax amount, rounded down to the minor unit (per line, as upstream)."""
    if amount < 0 or rate_bp < 0:
        raise ValueError("amount and rate must not be negative")
    return amount * rate_bp // 10_000


def rate_percent(rate_bp: int) -> int | float:
    """2000 -> 20, 550 -> 5.5: the tax rate as upstream showed it."""
    return rate_bp // 100 if rate_bp % 100 == 0 else rate_bp / 100
