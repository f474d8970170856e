"""The pieces of /metrics (shared/metrics.py): the exposition and its service label, HTTP requests
by route template, the pool's usage, the gauges read at scrape time (outbox, dead-letter queue),
and the outcomes the bus times (consumers, request/reply), against the real Postgres and RabbitMQ.
Metrics are per process: these tests read this process's registry, before and after."""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from orders.settings import OrdersSettings
from shared import db, metrics, runtime
from shared.bus import Responder, RpcClient, RpcError, RpcServer, RpcTimeout, RpcUnavailable
from shared.contracts import GetBasketSnapshot, OrderPlaced, envelope_for
from shared.uow import unit_of_work
from tests.platform.conftest import Platform, placed, wait_for
from tests.platform.test_rpc import answer

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0


def parse(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def gauges(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


# --- exposition and HTTP -----------------------------------------------------------------------------


def test_the_exposition_labels_every_sample_with_the_service_the_process_metrics_included() -> None:
    extra = GaugeMetricFamily("commerce_test_gauge", "a gauge read at scrape time", value=7)
    families = parse(metrics.exposition("orders", [extra]).decode())
    assert {s.labels.get("service") for family in families.values() for s in family.samples} == {"orders"}
    assert [(s.labels, s.value) for s in families["commerce_test_gauge"].samples] == [({"service": "orders"}, 7)]
    assert families["process_cpu_seconds"].type == "counter"
    assert families["commerce_http_request_duration_seconds"].type == "histogram"
    # The counters the benchmark reads, one series each, with no `_created` twin.
    for name in ("commerce_sql_statements", "commerce_events_published", "commerce_rpc_requests"):
        assert [s.name for s in families[name].samples] == [f"{name}_total"]


async def route(request: web.Request) -> web.Response:
    return web.Response(text=request.match_info["id"])


async def test_http_requests_are_timed_by_route_template_method_and_status(aiohttp_client) -> None:
    app = web.Application(middlewares=[runtime.access_log_middleware])
    app[runtime.SETTINGS] = OrdersSettings()
    app.router.add_get("/things/{id}", route)
    runtime.add_health_routes(app)
    client = await aiohttp_client(app)
    http = "commerce_http_request_duration_seconds_count"
    things = sample(http, route="/things/{id}", method="GET", status="200")
    missing = sample(http, route="unmatched", method="GET", status="404")
    odd = sample(http, route="unmatched", method="other", status="405")

    for thing in ("abc123", "def456", "abc123"):
        assert (await client.get(f"/things/{thing}")).status == 200
    assert (await client.get("/nowhere")).status == 404
    assert (await client.request("PROPFIND", "/things/abc123")).status == 405

    assert sample(http, route="/things/{id}", method="GET", status="200") == things + 3
    assert sample(http, route="unmatched", method="GET", status="404") == missing + 1
    assert sample(http, route="unmatched", method="other", status="405") == odd + 1
    response = await client.get("/metrics")
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = await response.text()
    assert 'route="/things/{id}"' in text and "abc123" not in text
    assert parse(text)["commerce_http_request_duration_seconds"].samples


# --- the pool, the outbox, the dead-letter queue -------------------------------------------------------


async def test_the_pool_reports_connections_in_use_idle_and_acquires_waiting(platform: Platform) -> None:
    settings = platform.settings["orders"].model_copy(
        update={"db_pool_min": 1, "db_pool_max": 2, "db_acquire_timeout": 10.0}
    )
    pool = await db.create_pool(settings)
    try:
        first, second = await pool.acquire(), await pool.acquire()
        assert pool.usage() == metrics.PoolUsage(in_use=2, idle=0, max=2, waiting=0)

        async def acquire() -> object:
            return await pool.acquire()

        third = asyncio.create_task(acquire())

        async def waiting() -> bool:
            return pool.usage().waiting == 1

        await wait_for(waiting, what="the third acquire to wait")
        await pool.release(first)
        await pool.release(await third)
        await pool.release(second)
        assert pool.usage() == metrics.PoolUsage(in_use=0, idle=2, max=2, waiting=0)
    finally:
        pool.terminate()  # never waits for a connection a failed assertion left in hand


async def test_the_outbox_gauges_say_how_many_events_wait_and_since_when(platform: Platform) -> None:
    pool = platform.pools["orders"]
    empty = gauges(await metrics.scrape_gauges(pool, None))
    assert empty[("commerce_outbox_backlog", ())] == 0
    assert empty[("commerce_outbox_oldest_seconds", ())] == 0
    assert empty[("commerce_scrape_probe_success", (("probe", "outbox"),))] == 1
    assert ("commerce_db_pool_max_connections", ()) in empty

    async with unit_of_work(pool, "orders") as uow:  # no relay: the events stay in the outbox
        uow.emit(placed("waiting-1"))
        uow.emit(placed("waiting-2"))
    await asyncio.sleep(0.2)
    waiting = gauges(await metrics.scrape_gauges(pool, None))
    assert waiting[("commerce_outbox_backlog", ())] == 2
    assert 0.2 <= waiting[("commerce_outbox_oldest_seconds", ())] < 10


async def test_a_scrape_says_what_it_could_not_read_and_leaves_its_gauges_out(platform: Platform) -> None:
    pool = await db.create_pool(platform.settings["orders"])
    await pool.close()
    assert platform.connection is not None
    missing = metrics.QueueDepth(platform.connection, f"{platform.namespace}.nobody.dlq")
    try:
        read = gauges(await metrics.scrape_gauges(pool, missing))
    finally:
        await missing.close()
    assert read[("commerce_scrape_probe_success", (("probe", "outbox"),))] == 0
    assert read[("commerce_scrape_probe_success", (("probe", "dlq"),))] == 0
    names = {name for name, _ in read}
    assert not {"commerce_outbox_backlog", "commerce_outbox_oldest_seconds", "commerce_dlq_depth"} & names


async def test_the_dead_letter_depth_is_a_passive_declare_cached_for_its_ttl(platform: Platform) -> None:
    assert platform.connection is not None
    channel = await platform.connection.channel(publisher_confirms=True)
    name = f"{platform.namespace}.metrics.dlq"
    depth = metrics.QueueDepth(platform.connection, name, ttl=0.5)
    try:
        with pytest.raises(aio_pika.exceptions.ChannelClosed):
            await depth.read()  # not declared yet: the broker says so, and the scrape reports it
        queue = await channel.declare_queue(name, exclusive=True)

        async def park() -> None:
            await channel.default_exchange.publish(aio_pika.Message(b"parked"), routing_key=queue.name)

        await park()
        await park()
        assert await depth.read() == 2  # its channel opened again after the failed declare
        await park()
        assert await depth.read() == 2  # read less than ttl ago
        await asyncio.sleep(0.6)
        assert await depth.read() == 3
        families = await metrics.scrape_gauges(None, depth)
        assert gauges(families)[("commerce_dlq_depth", (("queue", name),))] == 3
    finally:
        await depth.close()
        with contextlib.suppress(Exception):
            await channel.close()


# --- what the bus times --------------------------------------------------------------------------------


async def publish(platform: Platform, body: bytes, routing_key: str, message_type: str | None) -> None:
    assert platform.connection is not None
    channel = await platform.connection.channel()
    exchange = await channel.get_exchange(platform.topology("basket").events_exchange)
    await exchange.publish(aio_pika.Message(body, type=message_type), routing_key)
    await channel.close()


async def test_each_event_is_timed_by_its_type_and_what_became_of_it(platform: Platform) -> None:
    await platform.consumer("basket")
    handled = "commerce_event_handling_duration_seconds_count"
    event = OrderPlaced.routing_key()
    before = {
        outcome: sample(handled, event=kind, outcome=outcome)
        for outcome, kind in (("handled", event), ("duplicate", event), ("parked", "unknown"))
    }
    envelope = envelope_for(placed("timed-1"), "orders")
    body = envelope.model_dump_json().encode()
    await publish(platform, body, envelope.routing_key, envelope.routing_key)
    await publish(platform, body, envelope.routing_key, envelope.routing_key)  # the same event again
    await publish(platform, b"not an envelope", envelope.routing_key, None)

    async def counted() -> bool:
        return (
            sample(handled, event=event, outcome="handled") == before["handled"] + 1
            and sample(handled, event=event, outcome="duplicate") == before["duplicate"] + 1
            and sample(handled, event="unknown", outcome="parked") == before["parked"] + 1
        )

    await wait_for(counted, what="a handled, a duplicate and a parked event")
    assert sample("commerce_event_handling_duration_seconds_sum", event=event, outcome="handled") > 0


async def slow(request: GetBasketSnapshot) -> object:
    if request.basket_id == "slow":
        await asyncio.sleep(0.5)
    return await answer(request)


async def test_request_reply_calls_and_answers_are_timed_by_type_and_outcome(platform: Platform) -> None:
    assert platform.connection is not None
    client = RpcClient(platform.topology("orders"))
    await client.start(platform.connection)
    platform._stoppable.append(client)
    calls, served = "commerce_rpc_call_duration_seconds_count", "commerce_rpc_served_duration_seconds_count"
    kind = GetBasketSnapshot.type
    before = {
        outcome: sample(calls, request=kind, outcome=outcome) for outcome in ("ok", "error", "timeout", "unavailable")
    }
    served_before = {outcome: sample(served, request=kind, outcome=outcome) for outcome in ("ok", "error")}

    with pytest.raises(RpcUnavailable):
        await client.call(GetBasketSnapshot(basket_id="nobody-listens"), timeout=1)
    server = RpcServer(platform.topology("basket"), [Responder(GetBasketSnapshot, slow)])
    await server.start(platform.connection)
    platform._stoppable.append(server)
    await client.call(GetBasketSnapshot(basket_id="abc123"), timeout=2)
    with pytest.raises(RpcError, match="database on fire"):
        await client.call(GetBasketSnapshot(basket_id="explode"), timeout=2)
    with pytest.raises(RpcTimeout):
        await client.call(GetBasketSnapshot(basket_id="slow"), timeout=0.1)

    after = {outcome: sample(calls, request=kind, outcome=outcome) for outcome in before}
    assert {outcome: after[outcome] - before[outcome] for outcome in before} == {
        "ok": 1,
        "error": 1,
        "timeout": 1,
        "unavailable": 1,
    }

    async def answered() -> bool:  # the slow one too, after its caller gave up
        return sample(served, request=kind, outcome="ok") == served_before["ok"] + 2

    await wait_for(answered, what="the responder's answers")
    assert sample(served, request=kind, outcome="error") == served_before["error"] + 1
