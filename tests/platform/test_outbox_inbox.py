"""The outbox/inbox guarantees of ARCHITECTURE.md rules 2 and 3, attacked against the real broker.

Events are written by a unit of work (shared/uow.py) with the change they announce; consumers run
each handler in a unit of work that writes the inbox row first. Nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg
import orjson
import pytest

from shared.bus import EventConsumer, Subscription
from shared.contracts import OrderPlaced, StockCommitted, envelope_for
from shared.metrics import REGISTRY
from shared.outbox import Relay
from shared.uow import UnitOfWork, unit_of_work
from tests.platform.conftest import Platform, placed, record_effect, wait_for


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


async def _has(platform: Platform, service: str, order_id: str) -> bool:
    return await platform.effects(service, order_id) > 0


async def _drained(platform: Platform, service: str = "orders") -> bool:
    return await platform.outbox_rows(service) == 0


async def _async(value: bool) -> bool:
    return value


def _duplicates() -> float:
    """Order-placed events the consumers of this process found in their inbox already."""
    labels = {"event": OrderPlaced.routing_key(), "outcome": "duplicate"}
    return REGISTRY.get_sample_value("commerce_event_handling_duration_seconds_count", labels) or 0


async def publish_raw(platform: Platform, body: bytes, routing_key: str) -> None:
    assert platform.connection is not None
    channel = await platform.connection.channel()
    exchange = await channel.get_exchange(platform.topology("orders").events_exchange)
    await exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=routing_key), routing_key
    )
    await channel.close()


async def publish_placed(platform: Platform, order_id: str) -> None:
    envelope = envelope_for(placed(order_id), "orders")
    await publish_raw(platform, envelope.model_dump_json().encode(), envelope.routing_key)


# ---------------------------------------------------------------------------------------------
# From a unit of work to the consumers


async def test_committed_event_reaches_each_bound_consumer_once_and_rolled_back_never(platform: Platform):
    await platform.consumer("basket")
    await platform.consumer("shipping")
    await platform.relay()

    await platform.announce("committed")
    await platform.announce("rolledback", commit=False)

    for service in ("basket", "shipping"):
        await wait_for(lambda s=service: _has(platform, s, "committed"), what=f"{service} effect")
    await asyncio.sleep(0.5)  # room for a wrong second delivery to show up
    for service in ("basket", "shipping"):
        assert await platform.effects(service, "committed") == 1
        assert await platform.effects(service, "rolledback") == 0
    assert await platform.outbox_rows() == 0


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
    assert await platform.inbox_rows("basket") == 2


# ---------------------------------------------------------------------------------------------
# A consumer's unit of work: the inbox row first, the change, the events


class Handler:
    """Records an effect and emits one event per run; fails on the runs listed in `fail_on`."""

    def __init__(self, *fail_on: int) -> None:
        self.runs = 0
        self.fail_on = set(fail_on)

    async def __call__(self, uow: UnitOfWork, event: OrderPlaced) -> None:
        self.runs += 1
        await record_effect(uow, event.order_id)
        uow.emit(StockCommitted(order_id=event.order_id, reservation_id="r1", lines=[]))
        await asyncio.sleep(0.01)  # hold the inbox key a while: concurrent copies wait on it
        if self.runs in self.fail_on:
            raise RuntimeError("the handler failed after its change")


async def deliver(consumer: EventConsumer, order_id: str, copies: int = 1, envelope=None) -> list[bool]:
    """`copies` concurrent deliveries of one event, as `EventConsumer.process` hands them over."""
    event = placed(order_id)
    envelope = envelope or envelope_for(event, "orders")
    subscription = consumer.subscriptions[envelope.routing_key]
    return list(await asyncio.gather(*(consumer.handle(envelope, subscription, event) for _ in range(copies))))


async def emitted(platform: Platform, order_id: str) -> int:
    return await platform.pools["basket"].fetchval(
        "SELECT count(*) FROM outbox WHERE convert_from(body, 'UTF8')::jsonb -> 'payload' ->> 'order_id' = $1",
        order_id,
    )


async def test_an_event_delivered_twice_has_one_effect_and_one_set_of_events(platform: Platform):
    handler = Handler()
    consumer = platform.idle_consumer("basket", handler)
    envelope = envelope_for(placed("twice"), "orders")
    assert await deliver(consumer, "twice", envelope=envelope) == [True]
    assert await deliver(consumer, "twice", envelope=envelope) == [False]
    assert handler.runs == 1, "a duplicate reached the handler"
    assert await platform.effects("basket", "twice") == 1
    assert await emitted(platform, "twice") == 1
    assert await platform.inbox_rows("basket") == 1
    assert consumer.handled == 1


async def test_twenty_concurrent_copies_of_an_event_have_one_effect(platform: Platform):
    handler = Handler()
    consumer = platform.idle_consumer("basket", handler)
    outcomes = await deliver(consumer, "twenty", copies=20)
    assert sorted(outcomes) == [False] * 19 + [True]
    assert handler.runs == 1
    assert await platform.effects("basket", "twenty") == 1
    assert await emitted(platform, "twenty") == 1


async def test_a_failing_handler_writes_nothing_and_its_retry_handles_it(platform: Platform):
    """No inbox row (the event is not taken for handled), no change, no event; then the retry runs
    the handler from the start, once."""
    handler = Handler(1)
    consumer = platform.idle_consumer("basket", handler)
    envelope = envelope_for(placed("fails-first"), "orders")
    with pytest.raises(RuntimeError, match="failed after its change"):
        await deliver(consumer, "fails-first", envelope=envelope)
    assert await platform.inbox_rows("basket") == 0
    assert await platform.effects("basket", "fails-first") == 0
    assert await platform.outbox_rows("basket") == 0

    assert await deliver(consumer, "fails-first", envelope=envelope) == [True]
    assert await deliver(consumer, "fails-first", envelope=envelope) == [False]
    assert handler.runs == 2
    assert await platform.inbox_rows("basket") == 1
    assert await platform.effects("basket", "fails-first") == 1
    assert await emitted(platform, "fails-first") == 1


async def test_concurrent_copies_while_the_first_fails_still_have_one_effect(platform: Platform):
    """The copies wait on the first one's inbox key; it rolls back, so the next goes on as the first."""
    handler = Handler(1)
    consumer = platform.idle_consumer("basket", handler)
    event = placed("first-fails")
    envelope = envelope_for(event, "orders")
    subscription = consumer.subscriptions[envelope.routing_key]
    outcomes = await asyncio.gather(
        *(consumer.handle(envelope, subscription, event) for _ in range(10)), return_exceptions=True
    )
    assert sum(isinstance(outcome, RuntimeError) for outcome in outcomes) == 1
    assert sorted(outcome for outcome in outcomes if isinstance(outcome, bool)) == [False] * 8 + [True]
    assert handler.runs == 2
    assert await platform.effects("basket", "first-fails") == 1
    assert await emitted(platform, "first-fails") == 1


async def test_an_event_has_one_handler_per_consumer(platform: Platform):
    handler = Handler()
    subscriptions = [Subscription(OrderPlaced, handler), Subscription(OrderPlaced, handler)]
    with pytest.raises(ValueError, match="more than one subscription to the same event"):
        EventConsumer(platform.pools["basket"], platform.topology("basket"), subscriptions)


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
    await publish_placed(platform, "after-poison")

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


async def test_failing_handler_is_retried_with_backoff_then_parked(platform: Platform):
    attempts: list[int] = []

    async def flaky(uow: UnitOfWork, event: OrderPlaced) -> None:
        attempts.append(1)
        await record_effect(uow, event.order_id)
        if event.order_id == "always-fails" or len(attempts) < 2:
            raise RuntimeError("transient failure")

    await platform.consumer("basket", flaky)
    await publish_placed(platform, "recovers")
    await wait_for(lambda: _has(platform, "basket", "recovers"), what="effect after one retry")
    assert await platform.effects("basket", "recovers") == 1  # the failed attempt rolled back

    attempts.clear()
    await publish_placed(platform, "always-fails")
    assert platform.connection is not None
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

    async def database_away(uow: UnitOfWork, event: OrderPlaced) -> None:
        if len(failures) < 4:  # more failures than the two retry delays
            failures.append(1)
            raise asyncpg.PostgresConnectionError("the database went away")
        await record_effect(uow, event.order_id)

    await platform.consumer("basket", database_away)
    await publish_placed(platform, "outage")
    await wait_for(lambda: _has(platform, "basket", "outage"), timeout=15, what="effect after the outage")
    assert len(failures) == 4
    assert await platform.effects("basket", "outage") == 1
    assert platform.connection is not None
    channel = await platform.connection.channel()
    dlq = await channel.declare_queue(platform.topology("basket").dead_letter_queue(), passive=True)
    assert dlq.declaration_result.message_count == 0
    await channel.close()


# ---------------------------------------------------------------------------------------------
# The relay: claim, publish, confirm, forget


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
    await platform.announce("crash")
    await platform.relay(relay_cls=CrashAfterConfirm)

    await wait_for(lambda: _drained(platform), what="outbox drained after the crash")
    await wait_for(lambda: _has(platform, "basket", "crash"), what="effect")
    await asyncio.sleep(0.5)

    assert CrashAfterConfirm.crashed
    assert len(seen) == 2, "the broker received the event twice (published again after the crash)"
    assert await platform.effects("basket", "crash") == 1


async def test_two_relays_never_publish_the_same_row(platform: Platform):
    _, seen = await raw_tap(platform)
    async with unit_of_work(platform.pools["orders"], "orders") as uow:
        for i in range(300):
            uow.emit(placed(f"many-{i}"))
    first = await platform.relay()
    second = await platform.relay()

    await wait_for(lambda: _drained(platform), timeout=20, what="outbox drained by two relays")
    await wait_for(lambda: _async(len(seen) >= 300), what="300 messages at the broker")
    await asyncio.sleep(0.5)

    assert first.published + second.published == 300
    ids = [m.message_id for m in seen]
    assert len(ids) == 300 and len(set(ids)) == 300


# ---------------------------------------------------------------------------------------------
# The hand-off: a unit of work's events go to this process's relay right after the commit


async def _relay(platform: Platform, relay_cls: type[Relay] = Relay, service: str = "basket", **kwargs) -> Relay:
    relay = relay_cls(
        platform.pools[service],
        platform.settings[service].db_schema,
        platform.topology(service).events_exchange,
        listen_dsn=None,
        **kwargs,
    )
    assert platform.connection is not None
    await relay.start(platform.connection)
    platform._stoppable.append(relay)
    return relay


def _published(seen: list, routing_key: str, order_id: str) -> int:
    return sum(
        1 for m in seen if m.routing_key == routing_key and orjson.loads(m.body)["payload"]["order_id"] == order_id
    )


def _committed(seen: list, order_id: str) -> int:
    return _published(seen, "stock.committed.v1", order_id)


class WatchesHandOffs(Relay):
    """Records, for each hand-off, whether its rows were already visible to another connection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.handed: list[bool] = []

    async def _publish_handed_off(self, events) -> None:
        ids = [event.event_id for event in events]
        visible = await self.pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = ANY($1::uuid[])", ids)
        self.handed.append(visible == len(ids))
        await super()._publish_handed_off(events)


async def test_events_a_handler_emits_are_handed_to_the_relay_after_the_commit(platform: Platform):
    """No wake-up and no claim: the consumer's relay publishes its rows as soon as they are committed
    (this relay's own pass would not come for a minute), then forgets them; a duplicate hands off nothing."""
    _, seen = await raw_tap(platform)
    relay = await _relay(platform, WatchesHandOffs, poll_interval=60)
    consumer = platform.idle_consumer("basket", Handler(), relay=relay)
    envelope = envelope_for(placed("handed-off"), "orders")
    assert await deliver(consumer, "handed-off", envelope=envelope) == [True]
    await wait_for(lambda: _async(_committed(seen, "handed-off") == 1), timeout=5, what="the handed-off event")
    await wait_for(lambda: _drained(platform, "basket"), timeout=5, what="the row forgotten")
    assert await deliver(consumer, "handed-off", envelope=envelope) == [False]
    await asyncio.sleep(0.5)
    assert _committed(seen, "handed-off") == 1
    assert relay.handed == [True], "handed off before the commit, or more than once"


async def test_an_http_style_unit_of_work_hands_off_after_the_commit_and_a_rollback_never(platform: Platform):
    _, seen = await raw_tap(platform)
    relay = await _relay(platform, WatchesHandOffs, service="orders", poll_interval=60)
    await platform.announce("rolled-back", commit=False, relay=relay)
    await platform.announce("handed-off", relay=relay)
    await wait_for(lambda: _async(_published(seen, "order.placed.v1", "handed-off") == 1), timeout=5, what="event")
    await wait_for(lambda: _drained(platform), timeout=5, what="the row forgotten")
    await asyncio.sleep(0.3)
    assert relay.handed == [True]
    assert len(seen) == 1


class DiesBeforeHandOff(Relay):
    def hand_off(self, events) -> None:
        """The process died between the unit of work's commit and the hand-off."""


async def test_rows_never_handed_off_are_published_by_a_relay_once_their_lease_ends(platform: Platform):
    _, seen = await raw_tap(platform)
    dead = await _relay(platform, DiesBeforeHandOff, poll_interval=60, publish_timeout=2.0)  # leased for 4 s
    consumer = platform.idle_consumer("basket", Handler(), relay=dead)
    assert await deliver(consumer, "orphaned") == [True]
    await _relay(platform, poll_interval=0.2)  # another replica, polling
    await asyncio.sleep(1.0)
    assert _committed(seen, "orphaned") == 0, "a leased row was taken before its lease ended"
    await wait_for(lambda: _async(_committed(seen, "orphaned") == 1), timeout=10, what="the orphaned event")
    await wait_for(lambda: _drained(platform, "basket"), timeout=5, what="the row forgotten")


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
    RefusesHandOffs.refused = 0
    relay = await _relay(platform, RefusesHandOffs, poll_interval=60)
    consumer = platform.idle_consumer("basket", Handler(), relay=relay)
    assert await deliver(consumer, "given-back") == [True]
    await wait_for(lambda: _async(_committed(seen, "given-back") == 1), timeout=5, what="the event, by the pass")
    await wait_for(lambda: _drained(platform, "basket"), timeout=5, what="the row forgotten")
    assert RefusesHandOffs.refused == 1


class DiesBeforeAck(EventConsumer):
    """Its process dies once the unit of work has committed, before the ack."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.died = asyncio.Event()

    async def acknowledge(self, message) -> None:
        self.died.set()  # no ack: the test closes this consumer's connection, as the kernel would


async def test_a_process_dying_between_commit_and_ack_changes_nothing_twice(platform: Platform):
    """The broker redelivers to another replica, whose unit of work finds the inbox row: the handler
    does not run again. The events, leased to the dead process's relay, are published once by
    another relay when the lease ends."""
    _, seen = await raw_tap(platform)
    handler = Handler()
    dead_relay = await _relay(platform, DiesBeforeHandOff, poll_interval=60, publish_timeout=1.0)
    dying = DiesBeforeAck(
        platform.pools["basket"],
        platform.topology("basket"),
        [Subscription(OrderPlaced, handler)],
        relay=dead_relay,
    )
    connection = await aio_pika.connect_robust(platform.infra.amqp_url)
    try:
        await dying.start(connection)
        await publish_placed(platform, "dies-before-ack")
        await asyncio.wait_for(dying.died.wait(), 10)
    finally:
        await connection.close()

    duplicates = _duplicates()
    survivor = await platform.consumer("basket", handler)
    await _relay(platform, poll_interval=0.2)
    await wait_for(lambda: _async(_duplicates() == duplicates + 1), what="the redelivery absorbed")
    await wait_for(lambda: _async(_committed(seen, "dies-before-ack") == 1), timeout=10, what="the event")
    await wait_for(lambda: _drained(platform, "basket"), timeout=5, what="the row forgotten")
    await asyncio.sleep(0.3)
    assert handler.runs == 1
    assert survivor.handled == 0
    assert await platform.effects("basket", "dies-before-ack") == 1
    assert await platform.inbox_rows("basket") == 1
    assert _committed(seen, "dies-before-ack") == 1
