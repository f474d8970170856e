"""The `order.charge_requested` consumer: exactly one charge per attempt, whatever happens."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import orjson
import pytest

from payments.app import create_app
from payments.providers import CONSUMED_NONCE, DECLINED_NONCE, TOKEN_CONSUMED, VALID_NONCE
from shared.bus import Topology
from shared.contracts import PaymentCaptured, PaymentDeclined, envelope_for
from shared.http import new_id


class CrashAfterCharge:
    """The provider call happens, then the process 'dies' before the handler's commit."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def charge(self, *args, **kwargs):
        await self.inner.charge(*args, **kwargs)
        raise RuntimeError("simulated crash after the provider call")


async def test_valid_nonce_is_captured_once_with_the_type_success_status(checkout):
    msg = await checkout.request(VALID_NONCE, amount=4321, notes="leave at the door")
    assert await checkout.deliver(msg)
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["amount"], charge["status"], charge["success"]) == (4321, "captured", True)
    [event] = checkout.emitted
    assert isinstance(event, PaymentCaptured)
    assert (event.order_id, event.attempt_id, event.success_status) == (
        msg.order_id,
        msg.attempt_id,
        "payment-received",
    )
    view = event.transaction
    assert (view.id, view.amount, view.currency, view.provider, view.driver) == (
        charge["id"],
        4321,
        "GBP",
        "Sandbox",
        "sandbox",
    )
    assert (view.success, view.refund, view.status, view.card_type, view.last_four, view.notes) == (
        True,
        False,
        "captured",
        "Visa",
        "1881",
        "leave at the door",
    )
    [processor] = await checkout.sandbox_charges(msg.attempt_id)
    assert processor["reference"] == view.transaction_id


async def test_offline_type_captures_without_a_token(checkout):
    msg = await checkout.request(None, handle="offline", amount=999)
    await checkout.deliver(msg)
    [event] = checkout.emitted
    assert isinstance(event, PaymentCaptured)
    assert (event.success_status, event.transaction.driver, event.transaction.amount) == (
        "offline-payment",
        "offline",
        999,
    )


async def test_the_same_event_delivered_twice_charges_once(checkout):
    msg = await checkout.request(VALID_NONCE)
    envelope = envelope_for(msg, "orders")
    assert await checkout.deliver(msg, envelope) is True
    assert await checkout.deliver(msg, envelope) is False
    assert len(await checkout.charges(msg.order_id)) == 1
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    assert [type(e) for e in checkout.emitted] == [PaymentCaptured]


async def test_a_resent_request_for_a_settled_attempt_gets_the_same_answer(checkout):
    msg = await checkout.request(VALID_NONCE)
    await checkout.deliver(msg)
    await checkout.deliver(msg)  # a new event id for the same attempt (a resumed saga)
    [charge] = await checkout.charges(msg.order_id)
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    first, second = checkout.emitted
    assert isinstance(second, PaymentCaptured)
    assert first.transaction == second.transaction
    assert second.transaction.id == charge["id"]


async def test_crash_after_the_provider_call_then_redelivery_charges_once(checkout):
    msg = await checkout.request(VALID_NONCE, amount=5000)
    envelope = envelope_for(msg, "orders")
    crashing = {**checkout.providers, "sandbox": CrashAfterCharge(checkout.providers["sandbox"])}
    try:
        await checkout.deliver(msg, envelope, providers=crashing)
        raise AssertionError("the simulated crash did not happen")
    except RuntimeError as exc:
        assert "simulated crash" in str(exc)
    # The processor charged; our transaction and the inbox row rolled back; nothing announced.
    [processor] = await checkout.sandbox_charges(msg.attempt_id)
    assert await checkout.charges(msg.order_id) == []
    assert checkout.emitted == []
    assert (
        await checkout.pool.fetchval("SELECT amount FROM charge_intents WHERE attempt_id = $1", msg.attempt_id) == 5000
    )
    # The broker redelivers the same event: same key, same result, one captured transaction.
    assert await checkout.deliver(msg, envelope) is True
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["amount"], charge["transaction_id"]) == ("captured", 5000, processor["reference"])
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    assert [type(e) for e in checkout.emitted] == [PaymentCaptured]


async def test_redelivery_charges_the_recorded_intent_not_a_changed_amount(checkout):
    msg = await checkout.request(VALID_NONCE, amount=1500)
    crashing = {**checkout.providers, "sandbox": CrashAfterCharge(checkout.providers["sandbox"])}
    try:
        await checkout.deliver(msg, providers=crashing)
    except RuntimeError:
        pass
    changed = msg.model_copy(update={"amount": 1600})
    await checkout.deliver(changed)
    [charge] = await checkout.charges(msg.order_id)
    assert charge["amount"] == 1500
    assert [r["amount"] for r in await checkout.sandbox_charges(msg.attempt_id)] == [1500]


async def test_concurrent_deliveries_of_one_attempt_record_one_charge(checkout):
    msg = await checkout.request(VALID_NONCE)
    # Different event ids (orders re-sent the request) racing each other.
    await asyncio.gather(*(checkout.deliver(msg) for _ in range(4)))
    assert len(await checkout.charges(msg.order_id)) == 1
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    assert all(isinstance(e, PaymentCaptured) for e in checkout.emitted)
    assert len({e.transaction.id for e in checkout.emitted}) == 1


async def test_twenty_concurrent_copies_of_one_request_charge_once_and_announce_once(checkout):
    """The same event delivered twenty times at once (a redelivery racing the first delivery): the
    inbox row lets one through; the others wait on its key, then find it and change nothing."""
    msg = await checkout.request(VALID_NONCE, amount=2700)
    envelope = envelope_for(msg, "orders")
    handled = await asyncio.gather(*(checkout.deliver(msg, envelope) for _ in range(20)))
    assert sorted(handled) == [False] * 19 + [True]
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["amount"]) == ("captured", 2700)
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    [event] = checkout.emitted
    assert isinstance(event, PaymentCaptured)
    assert event.transaction.id == charge["id"]


async def test_concurrent_attempts_of_one_order_capture_once_and_charge_once(checkout):
    """Two attempts of one order at once: the order's lock lets one charge; the other finds the
    capture and is declined without asking the provider."""
    order_id = new_id()
    attempts = [await checkout.request(VALID_NONCE, order_id=order_id) for _ in range(2)]
    await asyncio.gather(*(checkout.deliver(msg) for msg in attempts))
    [charge] = await checkout.charges(order_id)
    assert charge["status"] == "captured"
    provider_charges = [len(await checkout.sandbox_charges(msg.attempt_id)) for msg in attempts]
    assert sorted(provider_charges) == [0, 1]
    assert sorted(type(e).__name__ for e in checkout.emitted) == ["PaymentCaptured", "PaymentDeclined"]
    declined = next(e for e in checkout.emitted if isinstance(e, PaymentDeclined))
    assert (declined.reason, declined.transaction) == ("This order already has a captured payment", None)


async def test_declined_nonce_then_a_valid_one(checkout):
    order_id = new_id()
    declined = await checkout.request(DECLINED_NONCE, order_id=order_id, amount=2000)
    await checkout.deliver(declined)
    retry = await checkout.request(VALID_NONCE, order_id=order_id, amount=2000)
    await checkout.deliver(retry)
    first, second = await checkout.charges(order_id)
    assert (first["status"], first["success"], first["attempt_id"]) == ("declined", False, declined.attempt_id)
    assert (second["status"], second["success"], second["attempt_id"]) == ("captured", True, retry.attempt_id)
    no, yes = checkout.emitted
    assert isinstance(no, PaymentDeclined)
    assert no.reason == "Processor declined: Do Not Honor"
    assert no.transaction is not None and no.transaction.success is False
    assert isinstance(yes, PaymentCaptured)


async def test_unknown_token_is_declined(checkout):
    msg = await checkout.request("tok_made_up")
    await checkout.deliver(msg)
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["success"]) == ("declined", False)
    assert isinstance(checkout.emitted[0], PaymentDeclined)


async def test_consumed_nonce_is_declined_without_a_processor_charge(checkout):
    msg = await checkout.request(CONSUMED_NONCE)
    await checkout.deliver(msg)
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["transaction_id"], charge["message"]) == ("declined", "", TOKEN_CONSUMED)
    assert await checkout.sandbox_charges(msg.attempt_id) == []
    [event] = checkout.emitted
    assert isinstance(event, PaymentDeclined)
    assert event.reason == TOKEN_CONSUMED


async def test_a_paid_order_is_never_captured_again(checkout):
    order_id = new_id()
    await checkout.deliver(await checkout.request(VALID_NONCE, order_id=order_id))
    again = await checkout.request(VALID_NONCE, order_id=order_id)
    await checkout.deliver(again)
    assert [c["status"] for c in await checkout.charges(order_id)] == ["captured"]
    assert await checkout.sandbox_charges(again.attempt_id) == []  # the provider was never asked
    event = checkout.emitted[-1]
    assert isinstance(event, PaymentDeclined)
    assert event.reason == "This order already has a captured payment"


async def test_an_attempt_charged_before_another_capture_is_voided_not_left_charged(checkout):
    """Attempt A reaches the provider, then its process dies before recording the result; attempt
    B of the same order is captured meanwhile. A's redelivery must not leave the customer charged
    twice: it asks the provider for A's result again (same key: no new charge) and voids it."""
    order_id = new_id()
    first = await checkout.request(VALID_NONCE, order_id=order_id, amount=3000)
    envelope = envelope_for(first, "orders")
    crashing = {**checkout.providers, "sandbox": CrashAfterCharge(checkout.providers["sandbox"])}
    with pytest.raises(RuntimeError, match="simulated crash"):
        await checkout.deliver(first, envelope, providers=crashing)
    second = await checkout.request(VALID_NONCE, order_id=order_id, amount=3000)
    assert await checkout.deliver(second) is True
    assert await checkout.deliver(first, envelope) is True  # the broker redelivers A

    charges = {c["attempt_id"]: c for c in await checkout.charges(order_id)}
    assert (charges[second.attempt_id]["status"], charges[first.attempt_id]["status"]) == ("captured", "voided")
    [processor] = await checkout.sandbox_charges(first.attempt_id)  # still the one charge at the provider
    assert charges[first.attempt_id]["transaction_id"] == processor["reference"]
    assert await checkout.pool.fetchval(
        "SELECT voided FROM sandbox_charges WHERE idempotency_key = $1", str(first.attempt_id)
    )
    captured, declined = checkout.emitted
    assert isinstance(captured, PaymentCaptured) and captured.attempt_id == second.attempt_id
    assert isinstance(declined, PaymentDeclined) and declined.attempt_id == first.attempt_id
    assert declined.reason == "This order already has a captured payment"
    assert declined.transaction is not None and declined.transaction.status == "voided"


async def test_unknown_payment_type_is_declined(checkout):
    msg = (await checkout.request(VALID_NONCE)).model_copy(update={"payment_type_id": new_id()})
    await checkout.deliver(msg)
    assert await checkout.charges(msg.order_id) == []
    [event] = checkout.emitted
    assert isinstance(event, PaymentDeclined)
    assert event.reason == "The selected payment type is invalid."


async def test_duplicate_delivery_through_the_bus_charges_once(aiohttp_client, settings, checkout):
    """The real consumer on the real queue: the same message published twice."""
    await aiohttp_client(create_app(settings))
    topology = Topology.from_settings(settings)
    connection = await aio_pika.connect_robust(settings.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(topology.events_exchange)
        observer = await channel.declare_queue(exclusive=True, auto_delete=True)
        await observer.bind(exchange, "payment.#")
        msg = await checkout.request(VALID_NONCE, amount=3100)
        sentinel = await checkout.request(None, handle="offline")
        envelope = envelope_for(msg, "orders")
        for env in (envelope, envelope, envelope_for(sentinel, "orders")):
            await exchange.publish(
                aio_pika.Message(env.model_dump_json().encode(), message_id=str(env.event_id)),
                routing_key=env.routing_key,
            )
        seen: dict[str, list[dict]] = {msg.order_id: [], sentinel.order_id: []}
        async with asyncio.timeout(20), observer.iterator() as messages:
            async for message in messages:
                await message.ack()
                body = orjson.loads(message.body)
                if body["payload"]["order_id"] in seen:
                    seen[body["payload"]["order_id"]].append(body)
                if seen[msg.order_id] and seen[sentinel.order_id]:
                    break
        [captured] = seen[msg.order_id]
        assert captured["type"] == "payment.captured"
        assert captured["payload"]["transaction"]["amount"] == 3100
        assert captured["correlation_id"] is None
        assert len(await checkout.charges(msg.order_id)) == 1
        assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    finally:
        await connection.close()
    assert uuid.UUID(captured["payload"]["attempt_id"]) == msg.attempt_id
