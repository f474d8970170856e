"""Money: integer minor units inside the system, exact conversions at the edge.

Basket amounts go over the wire as decimal numbers in major units (upstream GetCandy did so);
they are produced from integers here, never through float arithmetic.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import cache

from babel import numbers

DEFAULT_TAX_RATE_BP = 2000  # VAT 20%, in basis points


@cache
def exponent(currency: str) -> int:
    """Digits after the decimal point: 2 for GBP, 0 for JPY, 3 for KWD (ISO 4217's minor units,
    as the Unicode CLDR data in babel keeps them)."""
    return numbers.get_currency_precision(currency.upper())


def is_currency(code: str) -> bool:
    """An ISO 4217 code babel knows (upper case)."""
    return code.isupper() and numbers.is_currency(code)


def currency_name(code: str) -> str:
    return numbers.get_currency_name(code, locale="en")


def currency_symbol(code: str) -> str:
    return numbers.get_currency_symbol(code, locale="en")


def convert(amount: int, rate: Decimal, source: str, target: str) -> int:
    """`amount` minor units of `source` in minor units of `target`, at `rate` units of `target`
    per unit of `source`, rounded half up to the target's minor unit.

    1999 GBP minor units at 1.165 EUR -> 2329 (23.28835 EUR rounded to 23.29); 1999 GBP at
    181.5 JPY -> 3628 (3628.185 JPY rounded to 3628). The same rate and amount give the same
    result everywhere: this is the one place a price changes currency."""
    if amount < 0 or rate <= 0:
        raise ValueError("the amount must not be negative and the rate must be positive")
    if source == target:
        return amount
    major = Decimal(amount).scaleb(-exponent(source)) * rate
    return int(major.scaleb(exponent(target)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


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


def rate_text(rate: Decimal) -> str:
    """An exchange rate as the wire shows it: a decimal string without trailing zeros
    (1.16500000 -> "1.165", 1.00000000 -> "1", 100 -> "100", never "1E+2")."""
    return format(rate.normalize(), "f")
