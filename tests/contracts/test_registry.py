"""The contract registry: published schemas, compatibility, and who produces and consumes what."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import create_model

from shared.contracts import EVENTS, REQUESTS, OrderPlaced
from shared.contracts_schema import breaking_changes, check, generate, stale

SERVICES = {"basket", "orders", "shipping", "payments", "customers"}


def test_published_schemas_are_compatible_and_up_to_date():
    assert check() == []
    assert stale() == [], "run `make contracts` to regenerate shared/schemas and docs/events.md"


def variant_of_order_placed(drop: str | None = None, **fields: Any) -> dict[str, Any]:
    kept = {name: (info.annotation, info) for name, info in OrderPlaced.model_fields.items() if name != drop}
    kept.update(fields)
    return create_model("OrderPlaced", **kept).model_json_schema(mode="serialization")


def test_removing_a_field_is_a_breaking_change_that_asks_for_a_new_version():
    published = OrderPlaced.model_json_schema(mode="serialization")
    problems = breaking_changes(published, variant_of_order_placed(drop="reference"), "order.placed.v1")
    assert problems == [
        "order.placed.v1: reference: removed: a breaking change to a published version; add order.placed.v2 instead"
    ]


def test_retyping_a_field_or_adding_a_required_one_is_breaking():
    published = OrderPlaced.model_json_schema(mode="serialization")
    retyped = variant_of_order_placed(order_total=(str, ...))
    assert any("order_total: retyped" in p for p in breaking_changes(published, retyped, "order.placed.v1"))
    required = variant_of_order_placed(channel=(str, ...))
    assert any("channel: new required field" in p for p in breaking_changes(published, required, "order.placed.v1"))


def test_an_additive_optional_field_is_compatible():
    published = OrderPlaced.model_json_schema(mode="serialization")
    additive = variant_of_order_placed(channel=(str | None, None))
    assert breaking_changes(published, additive, "order.placed.v1") == []


def test_a_nested_field_removed_is_caught_too():
    generated = generate()
    schema = generated["payment.captured.v1"]
    nested = schema["$defs"]["TransactionView"]
    del nested["properties"]["amount"]
    nested["required"].remove("amount")
    problems = breaking_changes(generate()["payment.captured.v1"], schema, "payment.captured.v1")
    assert problems and "transaction.amount: removed" in problems[0]


def test_every_event_has_one_known_producer_and_a_consumer_or_is_external():
    for key, spec in EVENTS.items():
        assert spec.producer in SERVICES, key
        assert set(spec.consumers) <= SERVICES, key
        assert spec.producer not in spec.consumers, f"{key}: a service does not consume its own events"
        assert spec.consumers or spec.external, f"{key}: nobody consumes it and it is not marked external"


def test_every_request_has_a_responder_and_callers():
    for spec in REQUESTS.values():
        assert spec.responder in SERVICES
        assert spec.callers and set(spec.callers) <= SERVICES
        assert spec.responder not in spec.callers


@pytest.mark.parametrize("key", sorted(EVENTS))
def test_routing_keys_follow_the_convention(key: str):
    aggregate, event, version = key.split(".")
    assert aggregate and event and version.startswith("v") and version[1:].isdigit()
