"""ISO 3166 countries as pycountry (maintained with the standard) knows them: the one list, the
one rule for a country's public id and the one reading of what people type. Orders shows the list
(`GET /countries`) and validates order addresses against it; customers validates address-book
entries by the same ids, so the two can never disagree."""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from dataclasses import dataclass

import pycountry

# Names people type that ISO does not know.
COUNTRY_ALIASES = {"UK": "GB", "GREAT BRITAIN": "GB", "ENGLAND": "GB", "SCOTLAND": "GB", "WALES": "GB"}


@dataclass(frozen=True)
class Country:
    """An ISO 3166 country as `GET /countries` shows it (the flags are the admin's, kept apart)."""

    id: str
    alpha_2: str
    alpha_3: str
    numeric: str
    name: str


def country_id(alpha_2: str) -> str:
    """A country's public id: opaque like every id, and derived from its code, so that it is the
    same on every installation and in every service, and needs no row until an admin sets a flag."""
    digest = hashlib.sha256(f"country:{alpha_2}".encode()).digest()
    return base64.b32encode(digest[:15]).decode().lower()


def country_code(value: str) -> str | None:
    """A country name as upstream ("United Kingdom") or an ISO 3166 code -> alpha-2, else None."""
    text = value.strip()
    if not text:
        return None
    alias = COUNTRY_ALIASES.get(text.upper())
    if alias:
        return alias
    try:
        return pycountry.countries.lookup(text).alpha_2
    except LookupError:
        return None


def country_name(code: str | None) -> str | None:
    """The name upstream showed for a stored alpha-2 code."""
    if not code:
        return None
    country = pycountry.countries.get(alpha_2=code)
    return country.name if country else code


def _sort_key(name: str) -> str:
    # Accents aside, so that the Åland Islands come among the A's, not after Zimbabwe.
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()


# By name; a new pycountry release's countries appear with the default flags.
COUNTRIES = tuple(
    sorted(
        (Country(country_id(c.alpha_2), c.alpha_2, c.alpha_3, c.numeric, c.name) for c in pycountry.countries),
        key=lambda country: _sort_key(country.name),
    )
)
COUNTRIES_BY_ID = {country.id: country for country in COUNTRIES}
COUNTRIES_BY_CODE = {country.alpha_2: country for country in COUNTRIES}
