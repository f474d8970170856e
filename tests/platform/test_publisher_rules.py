"""Who may publish what (issue 17), the pure rules: the consumers' check of the publishing broker
user (`Topology.refusal`, `first_publisher`), the rights generated from the contract registry
(`shared.broker_users.grants`) and the production check of a service's own broker user. The
broker enforcing them is tests/platform/test_broker_users.py."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest

from orders.settings import OrdersSettings
from shared.broker_users import grants, services
from shared.bus import PUBLISHED_BY, Topology, first_publisher
from shared.contracts import EVENTS, REQUESTS, events_consumed_by

GOOD_KEY = secrets.token_urlsafe(48)


def production(prefix: str = "p-", service: str = "shipping") -> Topology:
    return Topology("ns", service, production=True, user_prefix=prefix)


def test_a_consumer_accepts_the_registrys_users_only():
    shipping = production()
    assert shipping.refusal("p-orders", ("orders",), "p-shipping") is None
    assert shipping.refusal("p-basket", ("orders",), "p-shipping") == (
        "published by broker user p-basket, expected p-orders"
    )
    assert shipping.refusal("orders", ("orders",), "p-shipping") is not None  # the prefix is part of the name
    assert shipping.refusal(None, ("orders",), "p-shipping") == "no publishing user (user_id), expected p-orders"
    # Its own user in another's place: production has no shared user.
    assert shipping.refusal("p-shipping", ("orders",), "p-shipping") is not None
    assert shipping.refusal("p-payments", ("basket", "orders"), "p-shipping") == (
        "published by broker user p-payments, expected p-basket or p-orders"
    )


def test_in_development_only_the_consumers_own_shared_user_and_no_user_are_let_through():
    shipping = Topology("ns", "shipping")
    assert shipping.refusal("guest", ("orders",), "guest") is None
    assert shipping.refusal(None, ("orders",), "guest") is None
    assert shipping.refusal("orders", ("orders",), "guest") is None
    assert shipping.refusal("basket", ("orders",), "guest") == "published by broker user basket, expected orders"
    assert shipping.refusal("guest", ("orders",), "shipping") == "published by broker user guest, expected orders"


def test_production_comes_from_the_settings():
    settings = OrdersSettings(environment="production", bus_user_prefix="prod-", identity_signing_key=GOOD_KEY)
    topology = Topology.from_settings(settings)
    assert topology.production and topology.broker_user() == "prod-orders"
    assert not Topology.from_settings(OrdersSettings()).production


@dataclass
class Message:
    user_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)


def test_a_copy_names_its_first_publisher_only_when_the_consumer_made_it():
    own = "p-shipping"
    assert first_publisher(Message("p-orders"), own) == "p-orders"
    assert first_publisher(Message(own, {PUBLISHED_BY: "p-orders"}), own) == "p-orders"
    assert first_publisher(Message(own, {PUBLISHED_BY: b"p-orders"}), own) == "p-orders"
    assert first_publisher(Message(own), own) == own
    # Only the consumer's own user can stamp a copy; anyone else's header is not believed.
    assert first_publisher(Message("p-basket", {PUBLISHED_BY: "p-orders"}), own) == "p-basket"
    assert first_publisher(Message(None, {PUBLISHED_BY: "p-orders"}), own) is None


# --- the generated rights ----------------------------------------------------------------------


def allows(expression: str, name: str) -> bool:
    """RabbitMQ's match: an unanchored regular expression search (ours anchor themselves)."""
    return re.search(expression, name) is not None


def own_queues(service: str) -> list[str]:
    bus = Topology("ns", service)
    names = []
    if events_consumed_by(service):
        names += [bus.queue(), bus.dead_letter_queue(), *(bus.retry_queue(i) for i in (1, 2, 3, 12))]
    if any(spec.responder == service for spec in REQUESTS.values()):
        names.append(bus.rpc_queue())
    if any(service in spec.callers for spec in REQUESTS.values()):
        names.append(bus.reply_queue("0123456789ab"))
    return names


@pytest.mark.parametrize("service", services())
def test_each_service_may_declare_and_read_its_own_queues_and_no_others(service: str):
    rights = grants(service, "ns")
    bus = Topology("ns", service)
    for name in own_queues(service):
        assert allows(rights.configure, name) and allows(rights.read, name), name
    for exchange in (bus.events_exchange, bus.dead_letter_exchange, bus.rpc_exchange):
        assert allows(rights.configure, exchange)
    others = [name for other in services() if other != service for name in own_queues(other)]
    others += [f"ns.{service}.other", f"ns.{service}x", f"other.{service}", f"ns.{service}.retry.x"]
    for name in others:
        assert not any(allows(r, name) for r in (rights.configure, rights.write, rights.read)), name


@pytest.mark.parametrize("service", services())
def test_each_service_publishes_on_the_exchanges_its_role_needs_and_only_its_own_events(service: str):
    rights = grants(service, "ns")
    bus = Topology("ns", service)
    produces = any(spec.producer == service for spec in EVENTS.values())
    asks = any(service in spec.callers for spec in REQUESTS.values())
    assert allows(rights.write, bus.events_exchange) == produces
    assert allows(rights.write, bus.rpc_exchange) == asks
    assert rights.events_exchange == bus.events_exchange
    for key, spec in EVENTS.items():
        assert allows(rights.publish_keys, key) == (spec.producer == service), key
        assert allows(rights.bind_keys, key) == (service in spec.consumers), key
        assert not allows(rights.publish_keys, key + "x") and not allows(rights.bind_keys, "x" + key)
    assert not allows(rights.bind_keys, "#") and not allows(rights.publish_keys, "#")


# --- production settings -----------------------------------------------------------------------


def amqp_problems(url: str, prefix: str = "") -> list[str]:
    settings = OrdersSettings(
        environment="production", identity_signing_key=GOOD_KEY, amqp_url=url, bus_user_prefix=prefix
    )
    return [problem for problem in settings.production_problems() if problem.startswith("ORDERS_AMQP_URL")]


def test_production_wants_the_services_own_broker_user_with_a_password_of_its_own():
    password = secrets.token_hex(16)
    assert amqp_problems(f"amqp://orders:{password}@broker:5672/") == []
    assert amqp_problems(f"amqp://prod-orders:{password}@broker:5672/", prefix="prod-") == []
    assert amqp_problems(f"amqp://basket:{password}@broker:5672/") == [
        "ORDERS_AMQP_URL must connect as the service's own broker user orders"
    ]
    assert amqp_problems("amqp://orders:CHANGE-ME-rabbitmq-password@broker:5672/") == [
        "ORDERS_AMQP_URL has a password published in this repository"
    ]
    assert amqp_problems(f"amqp://guest:{password}@broker:5672/") == [
        "ORDERS_AMQP_URL uses the broker's default user guest"
    ]
