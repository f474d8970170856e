"""Consumer contract tests: every consumer handles every valid message of the versions it declares.

For each service and each event the registry says it consumes, the registry's examples and
hypothesis-generated messages go through the service's real handler, as its app wires it, via
`EventConsumer.handle` on the real database: the handler must not raise (a message about an order,
basket or attempt the service does not know is a logged no-op), the inbox must absorb a redelivery,
and every event it emits must be one the registry says it produces and match the published schema.
Likewise each responder answers every valid request with a reply that matches the reply's schema.

What this does not repeat: invalid messages (bad JSON, an invalid payload, an unknown type or
version) never reach a handler. `EventConsumer.process`, which every service's consumer is, parks
them in the dead-letter queue with a reason and goes on; `tests/platform/test_outbox_inbox.py::
test_invalid_messages_are_parked_with_a_reason_and_do_not_block_the_queue` proves that on the
broker, and `test_bindings.py` checks per service that they are parked, not handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bus import EventConsumer, PermanentError, Topology
from shared.contract_examples import EXAMPLES
from shared.contracts import EVENTS, REQUESTS, Contract, Envelope, envelope_for, events_consumed_by
from shared.contracts_schema import schema_name
from shared.http import new_id
from tests.contracts.harness import SERVICES, OneConnection, Running, running
from tests.contracts.messages import assert_wire_valid, messages

CONSUMED = [(service, spec.routing_key) for service in SERVICES for spec in events_consumed_by(service)]

# A valid message a consumer refuses on purpose (raises PermanentError), with the reason it is
# documented: (service, routing key) -> why. None today; a refusal found here is a bug otherwise.
DELIBERATE_REFUSALS: dict[tuple[str, str], str] = {}

HYPOTHESIS = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)


async def run_property(strategy: st.SearchStrategy[Any], check: Callable[[Any], Awaitable[Any]]) -> None:
    """Hypothesis calls `check` on this event loop from a worker thread (hypothesis is synchronous),
    so that a failure shrinks against the real handler and the real database."""
    loop = asyncio.get_running_loop()

    @HYPOTHESIS
    @given(strategy)
    def holds(value: Any) -> None:
        asyncio.run_coroutine_threadsafe(check(value), loop).result(timeout=60)

    await asyncio.to_thread(holds)


async def deliver(svc: Running, conn: asyncpg.Connection, message: Contract) -> set[str]:
    """One delivery as `EventConsumer.process` makes it; returns the routing keys it emitted."""
    name = svc.service.name
    spec = EVENTS[message.routing_key()]
    sent = envelope_for(message, spec.producer, correlation_id=new_id())
    envelope = Envelope.model_validate_json(sent.model_dump_json())
    assert_wire_valid(type(message), envelope.payload)
    subscription = svc.subscriptions[envelope.routing_key]
    payload = subscription.model.model_validate(envelope.payload)
    consumer = EventConsumer(
        OneConnection(conn),  # type: ignore[arg-type]
        Topology.from_settings(svc.settings),
        list(svc.subscriptions.values()),
    )
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        try:
            assert await consumer.handle(envelope, subscription, payload) is True
        except PermanentError as exc:
            if (name, envelope.routing_key) in DELIBERATE_REFUSALS:
                return set()
            raise AssertionError(f"{name} refused a valid {envelope.routing_key}: {exc}") from exc
        assert await consumer.handle(envelope, subscription, payload) is False, "the inbox let a redelivery through"
        rows = await conn.fetch(
            "SELECT routing_key, body FROM outbox WHERE convert_from(body, 'UTF8')::jsonb ->> 'causation_id' = $1",
            str(envelope.event_id),
        )
        emitted = set()
        for row in rows:
            body = orjson.loads(row["body"])
            produced = EVENTS.get(row["routing_key"])
            assert produced is not None, f"{name} emitted {row['routing_key']}, which is not in the registry"
            assert produced.producer == name == body["producer"], row["routing_key"]
            assert body["correlation_id"] == envelope.correlation_id
            assert_wire_valid(produced.model, body["payload"])
            emitted.add(row["routing_key"])
        return emitted
    finally:
        await savepoint.rollback()


# What the registry's examples make each consumer emit: orders knows none of their orders, so it
# emits nothing; the others act on what the message says.
FROM_EXAMPLES = {
    ("basket", "order.stock_requested.v1"): {"stock.refused.v1"},  # variants it does not sell
    ("basket", "order.placed.v1"): {"stock.committed.v1"},
    ("basket", "order.failed.v1"): set(),  # a tombstone against a late stock request
    ("shipping", "order.placed.v1"): {"shipment.opened.v1"},
    ("payments", "order.charge_requested.v1"): {"payment.declined.v1", "payment.captured.v1"},
}


@pytest.mark.parametrize(("service", "key"), CONSUMED, ids=[f"{s}:{k}" for s, k in CONSUMED])
async def test_consumer_handles_every_valid_message(service: str, key: str, infra, monkeypatch):
    model = EVENTS[key].model
    async with running(service, infra, monkeypatch) as svc, svc.outer_transaction() as conn:
        seeded = await svc.service.data(conn)
        emitted: set[str] = set()
        for example in EXAMPLES[key]:
            emitted |= await deliver(svc, conn, model.model_validate(example))
        assert emitted == FROM_EXAMPLES.get((service, key), set())

        for probe_key, payload, expected in seeded.probes:
            if probe_key == key:
                assert await deliver(svc, conn, model.model_validate(payload)) == expected, payload

        await run_property(messages(model, seeded.overrides), lambda message: deliver(svc, conn, message))


@pytest.mark.parametrize("request_type", sorted(REQUESTS))
async def test_responder_answers_every_valid_request(request_type: str, infra, monkeypatch):
    spec = REQUESTS[request_type]
    # Repeatable read: the basket snapshot reads in a repeatable-read transaction of its own,
    # which can only nest (as a savepoint) in one of the same level.
    async with (
        running(spec.responder, infra, monkeypatch) as svc,
        svc.outer_transaction("repeatable_read") as conn,
    ):
        seeded = await svc.service.data(conn)
        async with svc.responders(conn) as handlers:

            async def answer(request: Contract) -> Contract:
                """One request as `RpcServer` answers it and `RpcClient` reads the reply."""
                wire = orjson.loads(request.model_dump_json())
                assert_wire_valid(spec.request, wire)
                savepoint = conn.transaction()
                await savepoint.start()
                try:
                    reply = await handlers[request_type](spec.request.model_validate(wire))
                finally:
                    await savepoint.rollback()
                assert type(reply) is spec.reply, type(reply)
                body = reply.model_dump_json()
                assert_wire_valid(spec.reply, orjson.loads(body))
                assert spec.reply.model_validate_json(body) == reply
                return reply

            for example in EXAMPLES[schema_name(spec.request)]:
                await answer(spec.request.model_validate(example))
            probes = [(payload, expected) for key, payload, expected in seeded.probes if key == request_type]
            assert probes, f"{svc.service.name} has no probe for {request_type}"
            for payload, expected in probes:
                reply = await answer(spec.request.model_validate(payload))
                assert expected(reply), reply
            await run_property(messages(spec.request, seeded.overrides), answer)
