"""The outbox/inbox guarantees of ARCHITECTURE.md rule 2 and 3, attacked against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aio_pika
import asyncpg
import orjson
import pytest

from shared import outbox
from shared.bus import EventConsumer, HandlerContext, Subscription
from shared.contracts import OrderPlaced, StockCommitted, envelope_for
from shared.outbox import Relay
from tests.platform.conftest import Platform, wait_for


def placed(order_id: str) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        attempt_id=uuid.uuid4(),
        basket_id="b" * 24,
        reference="2026-11-0001",
        status="payment-received",
        order_total=1200,
        currency="GBP",
        lines=[],
        placed_at=datetime.now(UTC),
    )


async def enqueue(platform: Platform, order_id: str, *, commit: bool = True) -> uuid.UUID:
    async with platform.pools["orders"].acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        event_id = await outbox.enqueue(conn, placed(order_id), "orders")
        await (tx.commit() if commit else tx.rollback())
    return event_id


async def raw_tap(platform: Platform) -> tuple[aio_pika.abc.AbstractQueue, list[aio_pika.abc.AbstractIncomingMessage]]:
    """A throwaway queue bound to every event: counts what the broker really received."""
    assert platform.connection is not None
    channel = await platform.connection.channel()
    exchange = await channel.declare_exchange(
        platform.topology("orders").events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, "#")
    seen: list = []

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(message)
        await message.ack()

    await queue.consume(on_message)
    return queue, seen


async def test_committed_event_reaches_each_bound_consumer_once_and_rolled_back_never(platform: Platform):
    await platform.consumer("basket")
    await platform.consumer("shipping")
    await platform.relay()

    await enqueue(platform, "committed")
    await enqueue(platform, "rolledback", commit=False)

    for service in ("basket", "shipping"):
        await wait_for(lambda s=service: _has(platform, s, "committed"), what=f"{service} effect")
    await asyncio.sleep(0.5)  # room for a wrong second delivery to show up
    for service in ("basket", "shipping"):
        assert await platform.effects(service, "committed") == 1
        assert await platform.effects(service, "rolledback") == 0
    assert await platform.outbox_rows() == 0


async def _has(platform: Platform, service: str, order_id: str) -> bool:
    return await platform.effects(service, order_id) > 0


async def publish_raw(platform: Platform, body: bytes, routing_key: str) -> None:
    assert platform.connection is not None
    channel = await platform.connection.channel()
    exchange = await channel.get_exchange(platform.topology("orders").events_exchange)
    await exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=routing_key), routing_key
    )
    await channel.close()


async def test_same_event_delivered_twice_and_fifty_times_concurrently_has_one_effect(platform: Platform):
    consumer = await platform.consumer("basket")
    envelope = envelope_for(placed("dup"), "orders")
    body = envelope.model_dump_json().encode()

    await publish_raw(platform, body, envelope.routing_key)
    await publish_raw(platform, body, envelope.routing_key)
    await wait_for(lambda: _has(platform, "basket", "dup"), what="first effect")

    other = envelope_for(placed("dup50"), "orders")
    other_body = other.model_dump_json().encode()
    await asyncio.gather(*(publish_raw(platform, other_body, other.routing_key) for _ in range(50)))
    await wait_for(lambda: _has(platform, "basket", "dup50"), what="effect of the 50 copies")
    await asyncio.sleep(0.5)

    assert await platform.effects("basket", "dup") == 1
    assert await platform.effects("basket", "dup50") == 1
    assert consumer.handled == 2
    inbox = await platform.pools["basket"].fetchval("SELECT count(*) FROM inbox WHERE consumer = 'basket'")
    assert inbox == 2


class CrashAfterConfirm(Relay):
    """Dies once between the broker's confirm and forgetting the row, like a killed process."""

    crashed = False

    async def confirmed(self, conn, ids):
        if ids and not self.crashed:
            CrashAfterConfirm.crashed = True
            raise ConnectionResetError("relay killed after confirm")
        await super().confirmed(conn, ids)


async def test_relay_crash_between_confirm_and_mark_republishes_and_inbox_absorbs(platform: Platform):
    _, seen = await raw_tap(platform)
    await platform.consumer("basket")
    CrashAfterConfirm.crashed = False
    await enqueue(platform, "crash")
    await platform.relay(relay_cls=CrashAfterConfirm)

    await wait_for(lambda: _drained(platform), what="outbox drained after the crash")
    await wait_for(lambda: _has(platform, "basket", "crash"), what="effect")
    await asyncio.sleep(0.5)

    assert CrashAfterConfirm.crashed
    assert len(seen) == 2, "the broker received the event twice (published again after the crash)"
    assert await platform.effects("basket", "crash") == 1


async def _drained(platform: Platform) -> bool:
    return await platform.outbox_rows() == 0


async def test_two_relays_never_publish_the_same_row(platform: Platform):
    _, seen = await raw_tap(platform)
    async with platform.pools["orders"].acquire() as conn, conn.transaction():
        for i in range(300):
            await outbox.enqueue(conn, placed(f"many-{i}"), "orders")
    first = await platform.relay()
    second = await platform.relay()

    await wait_for(lambda: _drained(platform), timeout=20, what="outbox drained by two relays")
    await wait_for(lambda: _count(seen, 300), what="300 messages at the broker")
    await asyncio.sleep(0.5)

    assert first.published + second.published == 300
    ids = [m.message_id for m in seen]
    assert len(ids) == 300 and len(set(ids)) == 300


async def _count(items: list, n: int) -> bool:
    return len(items) >= n


async def test_invalid_messages_are_parked_with_a_reason_and_do_not_block_the_queue(platform: Platform):
    consumer = await platform.consumer("basket")
    key = placed("x").routing_key()
    await publish_raw(platform, b"this is not json", key)
    bad_payload = envelope_for(placed("bad"), "orders").model_dump(mode="json")
    bad_payload["payload"]["order_total"] = "lots"
    await publish_raw(platform, orjson.dumps(bad_payload), key)
    unknown = envelope_for(placed("unknown"), "orders").model_dump(mode="json")
    unknown["version"] = 99
    await publish_raw(platform, orjson.dumps(unknown), key)
    await enqueue_direct(platform, "after-poison")

    await wait_for(lambda: _has(platform, "basket", "after-poison"), what="valid message after poison")
    assert platform.connection is not None
    channel = await platform.connection.channel()
    dlq = await channel.get_queue(platform.topology("basket").dead_letter_queue())
    reasons = []
    for _ in range(50):
        message = await dlq.get(no_ack=True, fail=False)
        if message is None:
            if len(reasons) == 3:
                break
            await asyncio.sleep(0.1)
            continue
        reasons.append(message.headers["x-dead-reason"])
    await channel.close()
    assert len(reasons) == 3, reasons
    assert any("invalid message" in r and "JSON" in r for r in reasons)
    assert any("order_total" in r for r in reasons)
    assert any("no handler for order.placed.v99" in r for r in reasons)
    assert consumer.handled == 1


async def enqueue_direct(platform: Platform, order_id: str) -> None:
    envelope = envelope_for(placed(order_id), "orders")
    await publish_raw(platform, envelope.model_dump_json().encode(), envelope.routing_key)


async def test_failing_handler_is_retried_with_backoff_then_parked(platform: Platform):
    attempts: list[int] = []

    async def flaky(ctx, payload):
        attempts.append(1)
        await ctx.conn.execute(
            "INSERT INTO effects (consumer, event_id, order_id) VALUES ('basket', $1, $2)",
            ctx.envelope.event_id,
            payload.order_id,
        )
        if payload.order_id == "always-fails" or len(attempts) < 2:
            raise RuntimeError("transient failure")

    from shared.bus import EventConsumer, Subscription
    from shared.contracts import OrderPlaced

    consumer = EventConsumer(
        platform.pools["basket"],
        platform.topology("basket"),
        {OrderPlaced.routing_key(): Subscription(OrderPlaced, flaky)},
    )
    assert platform.connection is not None
    await consumer.start(platform.connection)
    platform._stoppable.append(consumer)

    await enqueue_direct(platform, "recovers")
    await wait_for(lambda: _has(platform, "basket", "recovers"), what="effect after one retry")
    assert await platform.effects("basket", "recovers") == 1  # the failed attempt rolled back

    attempts.clear()
    await enqueue_direct(platform, "always-fails")
    channel = await platform.connection.channel()
    dlq = await channel.get_queue(platform.topology("basket").dead_letter_queue())

    async def parked() -> bool:
        return (await dlq.get(no_ack=True, fail=False)) is not None

    await wait_for(parked, what="message parked after its retries")
    await channel.close()
    assert len(attempts) == 3  # first try + 2 retries (retry_delays_ms has two steps)
    assert await platform.effects("basket", "always-fails") == 0


async def test_an_outage_is_retried_past_the_retry_budget_and_never_parked(platform: Platform):
    failures: list[int] = []

    async def database_away(ctx, payload):
        if len(failures) < 4:  # more failures than the two retry delays
            failures.append(1)
            raise asyncpg.PostgresConnectionError("the database went away")
        await ctx.conn.execute(
            "INSERT INTO effects (consumer, event_id, order_id) VALUES ('basket', $1, $2)",
            ctx.envelope.event_id,
            payload.order_id,
        )

    from shared.bus import EventConsumer, Subscription
    from shared.contracts import OrderPlaced

    consumer = EventConsumer(
        platform.pools["basket"],
        platform.topology("basket"),
        {OrderPlaced.routing_key(): Subscription(OrderPlaced, database_away)},
    )
    assert platform.connection is not None
    await consumer.start(platform.connection)
    platform._stoppable.append(consumer)

    await enqueue_direct(platform, "outage")
    await wait_for(lambda: _has(platform, "basket", "outage"), timeout=15, what="effect after the outage")
    assert len(failures) == 4
    assert await platform.effects("basket", "outage") == 1
    channel = await platform.connection.channel()
    dlq = await channel.declare_queue(platform.topology("basket").dead_letter_queue(), passive=True)
    assert dlq.declaration_result.message_count == 0
    await channel.close()


async def test_a_duplicate_is_rolled_back_with_its_events_even_when_its_handler_fails(platform: Platform):
    """The inbox row is written last, with the emitted events: a duplicate's handler runs, then
    everything it did is rolled back; one that fails on the way is still recognised as a duplicate
    (acknowledged, not retried or parked)."""
    runs = 0

    async def handler(ctx: HandlerContext, payload: OrderPlaced) -> None:
        nonlocal runs
        runs += 1
        await ctx.conn.execute(
            "INSERT INTO effects (consumer, event_id, order_id) VALUES ('basket', $1, $2)",
            ctx.envelope.event_id,
            payload.order_id,
        )
        await ctx.emit(StockCommitted(order_id=payload.order_id, reservation_id="r1", lines=[]))
        if runs >= 3:
            raise RuntimeError("a compare-and-set that finds its work already done")

    consumer = EventConsumer(platform.pools["basket"], platform.topology("basket"), {})
    subscription = Subscription(OrderPlaced, handler)
    event = placed("dup-failing")
    envelope = envelope_for(event, "orders")
    assert await consumer.handle(envelope, subscription, event) is True
    assert await consumer.handle(envelope, subscription, event) is False
    assert await consumer.handle(envelope, subscription, event) is False
    assert runs == 3
    assert await platform.effects("basket", "dup-failing") == 1
    assert await platform.outbox_rows("basket") == 1

    fresh = envelope_for(placed("fails-first"), "orders")
    with pytest.raises(RuntimeError):  # not a duplicate: the failure is the bus's to retry
        await consumer.handle(fresh, subscription, event)


def _writing_handler(effect_where: str = "true", *, required: bool = False):
    """Gives its change (an effects row) to the closing statement and emits one event."""

    async def handler(ctx: HandlerContext, payload: OrderPlaced) -> None:
        ctx.write(
            "effect AS (INSERT INTO effects (consumer, event_id, order_id) "
            f"SELECT 'basket', $1::uuid, $2::text FROM fresh WHERE {effect_where} RETURNING order_id)",
            (ctx.envelope.event_id, payload.order_id),
            gate="effect",
            required=required,
        )
        await ctx.emit(StockCommitted(order_id=payload.order_id, reservation_id="r1", lines=[]))

    return handler


async def test_a_change_written_with_the_inbox_row_without_a_transaction_happens_once(platform: Platform):
    """One statement for the change, the inbox row and the events: twenty concurrent copies of an
    event make one change and one event; a change that does not take place writes no event."""
    consumer = EventConsumer(platform.pools["basket"], platform.topology("basket"), {})
    subscription = Subscription(OrderPlaced, _writing_handler(), transaction=False)
    event = placed("one-statement")
    envelope = envelope_for(event, "orders")
    outcomes = await asyncio.gather(*(consumer.handle(envelope, subscription, event) for _ in range(20)))
    assert sorted(outcomes) == [False] * 19 + [True]
    assert await platform.effects("basket", "one-statement") == 1
    assert await platform.outbox_rows("basket") == 1

    nothing = Subscription(OrderPlaced, _writing_handler("false"), transaction=False)
    other = placed("no-change")
    assert await consumer.handle(envelope_for(other, "orders"), nothing, other) is True
    assert await platform.effects("basket", "no-change") == 0
    assert await platform.outbox_rows("basket") == 1  # nothing to announce


@pytest.mark.parametrize("transaction", [True, False])
async def test_a_required_change_that_does_not_take_place_leaves_the_event_unhandled(
    platform: Platform, transaction: bool
):
    """The closing statement fails as a whole: no inbox row (the event is not taken for handled)
    and no event, with or without the handler's transaction."""
    consumer = EventConsumer(platform.pools["basket"], platform.topology("basket"), {})
    event = placed(f"required-{transaction}")
    envelope = envelope_for(event, "orders")
    missing = Subscription(OrderPlaced, _writing_handler("false", required=True), transaction=transaction)
    with pytest.raises(asyncpg.RaiseError, match=r"change not made: order\.placed\.v1"):
        await consumer.handle(envelope, missing, event)
    assert await platform.pools["basket"].fetchval("SELECT count(*) FROM inbox") == 0
    assert await platform.outbox_rows("basket") == 0
    # Retried once the change can take place: handled, not a duplicate; then a duplicate.
    made = Subscription(OrderPlaced, _writing_handler(required=True), transaction=transaction)
    assert await consumer.handle(envelope, made, event) is True
    assert await consumer.handle(envelope, made, event) is False
    assert await platform.effects("basket", event.order_id) == 1
    assert await platform.outbox_rows("basket") == 1


def _emitting_handler(order_id: str) -> Subscription:
    async def handler(ctx: HandlerContext, payload: OrderPlaced) -> None:
        await ctx.emit(StockCommitted(order_id=order_id, reservation_id="r1", lines=[]))

    return Subscription(OrderPlaced, handler)


async def _relay(platform: Platform, relay_cls: type[Relay] = Relay, **kwargs) -> Relay:
    relay = relay_cls(
        platform.pools["basket"],
        platform.settings["basket"].db_schema,
        platform.topology("basket").events_exchange,
        listen_dsn=None,
        **kwargs,
    )
    assert platform.connection is not None
    await relay.start(platform.connection)
    platform._stoppable.append(relay)
    return relay


def _committed(seen: list, order_id: str) -> int:
    return sum(
        1
        for m in seen
        if m.routing_key == "stock.committed.v1" and orjson.loads(m.body)["payload"]["order_id"] == order_id
    )


async def test_events_a_handler_emits_are_handed_to_the_relay_after_the_commit(platform: Platform):
    """No wake-up and no claim: the consumer's relay publishes its rows as soon as they are committed
    (this relay's own pass would not come for a minute), then forgets them; a duplicate hands off nothing."""
    _, seen = await raw_tap(platform)
    relay = await _relay(platform, poll_interval=60)
    consumer = EventConsumer(platform.pools["basket"], platform.topology("basket"), {}, relay=relay)
    event = placed("handed-off")
    envelope = envelope_for(event, "orders")
    assert await consumer.handle(envelope, _emitting_handler("handed-off"), event) is True
    await wait_for(lambda: _async(_committed(seen, "handed-off") == 1), timeout=5, what="the handed-off event")
    await wait_for(lambda: _outbox_empty(platform), timeout=5, what="the row forgotten")
    assert await consumer.handle(envelope, _emitting_handler("handed-off"), event) is False
    await asyncio.sleep(0.5)
    assert _committed(seen, "handed-off") == 1


class DiesBeforeHandOff(Relay):
    def hand_off(self, events) -> None:
        """The process died between the handler's commit and the hand-off."""


async def test_rows_never_handed_off_are_published_by_a_relay_once_their_lease_ends(platform: Platform):
    _, seen = await raw_tap(platform)
    dead = await _relay(platform, DiesBeforeHandOff, poll_interval=60, publish_timeout=2.0)  # leased for 4 s
    consumer = EventConsumer(platform.pools["basket"], platform.topology("basket"), {}, relay=dead)
    event = placed("orphaned")
    assert await consumer.handle(envelope_for(event, "orders"), _emitting_handler("orphaned"), event) is True
    await _relay(platform, poll_interval=0.2)  # another replica, polling
    await asyncio.sleep(1.0)
    assert _committed(seen, "orphaned") == 0, "a leased row was taken before its lease ended"
    await wait_for(lambda: _async(_committed(seen, "orphaned") == 1), timeout=10, what="the orphaned event")
    await wait_for(lambda: _outbox_empty(platform), timeout=5, what="the row forgotten")


async def _async(value: bool) -> bool:
    return value


async def _outbox_empty(platform: Platform) -> bool:
    return await platform.outbox_rows("basket") == 0


class RefusesHandOffs(Relay):
    """Its broker channel fails every hand-off (while the relay's own pass still publishes)."""

    refused = 0

    async def _publish_handed_off(self, events) -> None:
        publish = self._publish

        async def refuse(*_args) -> None:
            RefusesHandOffs.refused += 1
            raise ConnectionError("channel closed")

        self._publish = refuse  # type: ignore[method-assign]
        try:
            await super()._publish_handed_off(events)
        finally:
            self._publish = publish  # type: ignore[method-assign]


async def test_a_failed_hand_off_gives_the_rows_back_to_the_relays_pass(platform: Platform):
    _, seen = await raw_tap(platform)
    relay = await _relay(platform, RefusesHandOffs, poll_interval=60)
    consumer = EventConsumer(platform.pools["basket"], platform.topology("basket"), {}, relay=relay)
    event = placed("given-back")
    assert await consumer.handle(envelope_for(event, "orders"), _emitting_handler("given-back"), event) is True
    await wait_for(lambda: _async(_committed(seen, "given-back") == 1), timeout=5, what="the event, by the pass")
    await wait_for(lambda: _outbox_empty(platform), timeout=5, what="the row forgotten")
    assert RefusesHandOffs.refused == 1
