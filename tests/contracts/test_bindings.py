"""Each service binds, handles and answers exactly what the contract registry says, no more, no less.

The registry test (`test_registry.py`) checks the registry against itself; these check it against
the services: the subscriptions and responders each app really wires (recorded from its own
`create_app`), and the bindings its consumer really declares on the broker.
"""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
import orjson
import pytest

from shared.bus import EventConsumer, Topology, declare_topology
from shared.contract_examples import EXAMPLES
from shared.contracts import EVENTS, REQUESTS, Envelope, events_consumed_by
from tests.contracts.harness import SERVICES, running
from tests.support import delete_bus_namespace


def consumed_keys(service: str) -> set[str]:
    return {spec.routing_key for spec in events_consumed_by(service)}


def responded_types(service: str) -> set[str]:
    return {request_type for request_type, spec in REQUESTS.items() if spec.responder == service}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_the_app_subscribes_and_answers_exactly_what_the_registry_says(service: str, infra, monkeypatch):
    async with running(service, infra, monkeypatch) as svc:
        assert set(svc.subscriptions) == consumed_keys(service)
        for key, subscription in svc.subscriptions.items():
            # The handler is fed this model: it must be the registry's class for the key, not a look-alike.
            assert subscription.model is EVENTS[key].model, key
            assert subscription.model.routing_key() == key
        assert svc.responder_types() == responded_types(service)


async def bound_keys(infra: Any, service: str) -> set[str]:
    """The routing keys the service's consumer binds on the broker, found by publishing each key of
    the registry (and an unknown version of each) as a mandatory message to a namespace where only
    this service's topology exists: a key nobody binds comes back unroutable."""
    namespace = f"{infra.namespace}c{service[:3]}"
    settings = infra.settings(SERVICES[service].settings, bus_namespace=namespace)
    connection = await aio_pika.connect(infra.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await declare_topology(channel, Topology.from_settings(settings))
        if queue is None:
            return set()
        exchange = await channel.get_exchange(Topology.from_settings(settings).events_exchange)
        candidates = sorted(EVENTS) + [key.replace(".v1", ".v99") for key in sorted(EVENTS)] + ["made.up.v1"]
        routed = set()
        for key in candidates:
            try:
                await exchange.publish(aio_pika.Message(b"{}"), routing_key=key, mandatory=True)
            except aio_pika.exceptions.PublishError:
                continue
            routed.add(key)
        return routed
    finally:
        await connection.close()
        await delete_bus_namespace(infra.amqp_url, namespace)


async def test_broker_bindings_match_the_registry_and_every_event_has_a_consumer_or_is_external(infra):
    bound = {service: await bound_keys(infra, service) for service in sorted(SERVICES)}
    for service, keys in bound.items():
        assert keys == consumed_keys(service), service
        # Every key a service binds is produced by some service (registry entries name their producer).
        assert all(EVENTS[key].producer in SERVICES and EVENTS[key].producer != service for key in keys)
    bound_anywhere = set().union(*bound.values())
    for key, spec in EVENTS.items():
        assert key in bound_anywhere or spec.external, f"{key}: nobody binds it and it is not marked external"
    assert bound_anywhere == {key for key, spec in EVENTS.items() if spec.consumers}


class RecordingConsumer(EventConsumer):
    """The service's consumer with the broker side (ack, park, retry) recorded instead of sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[str] = []

    async def park(self, message: Any, reason: str) -> None:
        self.outcomes.append(f"parked: {reason}")

    async def acknowledge(self, message: Any) -> None:
        self.outcomes.append("acknowledged")

    async def retry_or_park(self, message: Any, exc: Exception) -> None:
        self.outcomes.append(f"retried: {exc}")

    async def handle(self, envelope: Envelope, subscription: Any, payload: Any) -> bool:
        raise AssertionError(f"{envelope.routing_key} reached a handler")


class FakeMessage:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers: dict[str, Any] = {}
        self.type = None


def envelope_bytes(key: str, payload: dict[str, Any], **changes: Any) -> bytes:
    type_, _, version = key.rpartition(".v")
    envelope = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "version": int(version),
        "occurred_at": "2024-05-14T10:00:00Z",
        "producer": EVENTS[key].producer,
        "payload": payload,
    }
    return orjson.dumps(envelope | changes)


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_unknown_versions_types_and_invalid_payloads_are_parked_with_a_reason(service: str, infra, monkeypatch):
    """Per service, without the broker: `process` parks what no handler of this service may see.
    (The broker side, the dead-letter queue and its `x-dead-reason`, is proven once for the shared
    consumer in tests/platform/test_outbox_inbox.py.)"""
    async with running(service, infra, monkeypatch) as svc:
        consumer = RecordingConsumer(svc.pool, Topology.from_settings(svc.settings), list(svc.subscriptions.values()))
        for key in sorted(svc.subscriptions):
            example = EXAMPLES[key][0]
            cases = {
                "unknown version": (envelope_bytes(key, example, version=99), f"no handler for {key[:-3]}.v99"),
                "unknown type": (envelope_bytes(key, example, type="made.up"), "no handler for made.up.v1"),
                "invalid payload": (envelope_bytes(key, {**example, "order_id": 42}), "order_id"),
                "not an envelope": (b"not json", "invalid message"),
            }
            for case, (body, reason) in cases.items():
                consumer.outcomes.clear()
                await consumer.process(FakeMessage(body))  # type: ignore[arg-type]
                assert len(consumer.outcomes) == 1, (key, case, consumer.outcomes)
                assert consumer.outcomes[0].startswith("parked: invalid message"), (key, case, consumer.outcomes)
                assert reason in consumer.outcomes[0], (key, case, consumer.outcomes)
