"""Hypothesis strategies for every contract message, derived from the pydantic models.

A generated message is valid for its model and its published JSON schema (the tests check both),
and plausible: ids are `new_id()`-like or arbitrary text, amounts and quantities in the range a
shop sees, statuses and currencies mostly the real ones. Text never holds NUL: every edge refuses
it (422), and Postgres text and jsonb cannot store it, so no producer can ever send one.
"""

from __future__ import annotations

import types
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import annotated_types
import jsonschema
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from shared.contracts import Contract
from shared.contracts_schema import load_checked_in, schema_name

Overrides = dict[str, st.SearchStrategy[Any]]

PUBLISHED = load_checked_in()

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
NEW_ID = st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=24, max_size=24)
IDS = st.one_of(NEW_ID, NEW_ID, TEXT)
CURRENCIES = st.one_of(
    st.sampled_from(["GBP", "EUR", "USD"]), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
)
STATUSES = st.one_of(
    st.sampled_from(
        [
            "awaiting-payment",
            "payment-processing",
            "payment-received",
            "offline-payment",
            "failed",
            "dispatched",
            "expired",
            "voided",
            "refunded",
            "captured",
            "declined",
        ]
    ),
    TEXT,
)
COUNTRIES = st.one_of(st.sampled_from(["GB", "gb", "FR", "DE", "US", "IE"]), TEXT)
TIMEZONES = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))])
DATETIMES = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=TIMEZONES)
AMOUNT_MAX = 1_000_000_000  # ten million in major units: far beyond any basket, well inside bigint
QUANTITY_MAX = 1_000

# A rate as the snapshot carries it: a positive decimal string, up to ten digits and eight places.
EXCHANGE_RATES = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("9999999999"), places=8).map(
    lambda rate: format(rate.normalize(), "f")
)

BY_NAME: Overrides = {
    "currency": CURRENCIES,
    "base_currency": CURRENCIES,
    "exchange_rate": EXCHANGE_RATES,
    "status": STATUSES,
    "success_status": STATUSES,
    "from_status": STATUSES,
    "to_status": STATUSES,
    "country": COUNTRIES,
    "quantity": st.integers(1, QUANTITY_MAX),
}


def _bounds(info: FieldInfo) -> tuple[int, int]:
    low, high = 0, AMOUNT_MAX
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = max(low, int(item.ge))
        elif isinstance(item, annotated_types.Gt):
            low = max(low, int(item.gt) + 1)
        elif isinstance(item, annotated_types.Le):
            high = min(high, int(item.le))
        elif isinstance(item, annotated_types.Lt):
            high = min(high, int(item.lt) - 1)
    return low, high


def _for_type(annotation: Any, name: str, info: FieldInfo, overrides: Overrides) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_for_type(arg, name, info, overrides) for arg in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(_for_type(args[0], name, info, overrides), max_size=4)
    if origin is dict:
        return st.dictionaries(TEXT, _for_type(args[1], name, info, overrides), max_size=3)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return payloads(annotation, overrides)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(*_bounds(info))
    if annotation is uuid.UUID:
        return st.uuids()
    if annotation is datetime:
        return DATETIMES
    if annotation is str:
        if name == "id" or name.endswith("_id"):
            return IDS
        return TEXT
    raise TypeError(f"no strategy for {name}: {annotation!r}; extend tests/contracts/messages.py")


def _for_field(name: str, info: FieldInfo, overrides: Overrides) -> st.SearchStrategy[Any]:
    if name in overrides:
        strategy = overrides[name]
        optional = type(None) in typing.get_args(info.annotation)
        return st.one_of(strategy, st.none()) if optional else strategy
    return _for_type(info.annotation, name, info, overrides)


def payloads(model: type[BaseModel], overrides: Overrides | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Payload dicts of `model` (python values, not yet validated); fields with defaults sometimes left out."""
    overrides = BY_NAME | (overrides or {})
    required = {n: _for_field(n, i, overrides) for n, i in model.model_fields.items() if i.is_required()}
    optional = {n: _for_field(n, i, overrides) for n, i in model.model_fields.items() if not i.is_required()}
    return st.fixed_dictionaries(required, optional=optional)


def messages(model: type[BaseModel], overrides: Overrides | None = None) -> st.SearchStrategy[Any]:
    """Valid instances of `model`."""
    return payloads(model, overrides).map(model.model_validate)


def schema_validator(name: str) -> jsonschema.protocols.Validator:
    """The checked-in schema `name` (`<type>.v<N>`), formats (uuid, date-time) checked too."""
    schema = PUBLISHED[name]
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def assert_wire_valid(model: type[Contract], payload: dict[str, Any]) -> None:
    """A payload as it travels (JSON) matches its model and its published schema."""
    errors = sorted(schema_validator(schema_name(model)).iter_errors(payload), key=str)
    assert not errors, f"{schema_name(model)}: {[e.message for e in errors]} in {payload}"
    model.model_validate(payload)
