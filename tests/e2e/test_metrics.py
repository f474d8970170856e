"""/metrics of every service, read with prometheus-client's own parser, before and after one
checkout through the gateway (issue 19): the exposition format and its content type, the
histograms counting the checkout where it went (HTTP by route template, consumers, request/reply,
the saga's stages), the gauges read at scrape time (outbox, dead-letter queue, pool), the process
metrics, the counters the benchmark reads; and every metric the dashboard and the alert rules
name is one the services expose.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from bench.shopper import Outcome, Shopper
from shared.contracts import (
    GetBasketSnapshot,
    OrderChargeRequested,
    OrderPlaced,
    OrderStockRequested,
    PaymentCaptured,
    StockReserved,
    events_consumed_by,
)
from tests.deploy.monitoring import alerts, dashboard_queries, metric_names
from tests.e2e.test_checkout import create_product, variant_of
from tests.support import ALL_SERVICES, Stack

Families = dict[str, Metric]
Scrape = dict[str, Families]
HTTP = "commerce_http_request_duration_seconds"
HANDLED = "commerce_event_handling_duration_seconds_count"
# The counters bench/__main__.py reads line by line: one series per service each.
BENCH_COUNTERS = ("commerce_sql_statements_total", "commerce_events_published_total", "commerce_rpc_requests_total")


async def scrape(session: aiohttp.ClientSession, stack: Stack, service: str) -> Families:
    async with session.get(stack.url(service) + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


async def scrape_all(session: aiohttp.ClientSession, stack: Stack) -> Scrape:
    return {service: await scrape(session, stack, service) for service in ALL_SERVICES}


def value(families: Families, sample: str, **labels: str) -> float:
    """The sum of the samples named `sample` whose labels include `labels`."""
    return sum(
        found.value
        for family in families.values()
        for found in family.samples
        if found.name == sample and labels.items() <= found.labels.items()
    )


def delta(before: Scrape, after: Scrape, service: str, sample: str, **labels: str) -> float:
    return value(after[service], sample, **labels) - value(before[service], sample, **labels)


def handled(event: Any) -> dict[str, str]:
    return {"event": event.routing_key(), "outcome": "handled"}


async def settled(session: aiohttp.ClientSession, stack: Stack, before: Scrape, timeout: float = 15.0) -> Scrape:
    """A scrape of every service once the checkout's last steps are counted: the answer to
    POST /orders/process comes before its consumers ack, and shipping opens the shipment after."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        after = await scrape_all(session, stack)
        if (
            delta(before, after, "orders", HANDLED, **handled(PaymentCaptured)) >= 1
            and delta(before, after, "shipping", HANDLED, **handled(OrderPlaced)) >= 1
        ):
            return after
        assert asyncio.get_running_loop().time() < deadline, "the checkout's consumers were not counted in time"
        await asyncio.sleep(0.1)


@pytest.fixture
async def checkout(stack: Stack, session: aiohttp.ClientSession) -> tuple[Scrape, Outcome, Scrape]:
    """/metrics of every service, one checkout through the gateway, /metrics again."""
    product = await create_product(session, stack, inventory=5)
    before = await scrape_all(session, stack)
    outcome = await Shopper(session, stack.gateway).checkout([(variant_of(product)["id"], 1)])
    assert outcome.placed, outcome.error
    return before, outcome, await settled(session, stack, before)


async def test_every_service_serves_its_metrics_in_the_prometheus_format_labelled_with_itself(stack: Stack, session):
    for service in ALL_SERVICES:
        families = await scrape(session, stack, service)
        assert {sample.labels.get("service") for family in families.values() for sample in family.samples} == {service}
        assert families[HTTP].type == "histogram"
        # The process collector's, under their standard names.
        assert families["process_cpu_seconds"].type == "counter"
        assert value(families, "process_resident_memory_bytes") > 0
        probes = {sample.labels["probe"]: sample.value for sample in families["commerce_scrape_probe_success"].samples}
        if service == "gateway":  # no database, no broker
            assert probes == {}
            assert not {"commerce_outbox_backlog", "commerce_db_pool_connections", "commerce_dlq_depth"} & set(families)
            continue
        assert all(probes.values()), probes
        assert families["commerce_outbox_backlog"].type == "gauge"
        assert value(families, "commerce_outbox_oldest_seconds") >= 0
        in_use = value(families, "commerce_db_pool_connections", state="in_use")
        idle = value(families, "commerce_db_pool_connections", state="idle")
        assert 1 <= in_use + idle <= value(families, "commerce_db_pool_max_connections")
        assert value(families, "commerce_db_pool_waiting") >= 0
        if events_consumed_by(service):
            (dlq,) = families["commerce_dlq_depth"].samples
            assert dlq.labels["queue"] == f"{stack.infra.namespace}.{service}.dlq"
            assert dlq.value == 0
        else:
            assert "commerce_dlq_depth" not in families
        for name in BENCH_COUNTERS:
            assert [
                sample.labels for family in families.values() for sample in family.samples if sample.name == name
            ] == [{"service": service}], name


async def test_one_checkout_is_counted_where_it_went(checkout: tuple[Scrape, Outcome, Scrape]):
    before, outcome, after = checkout

    # HTTP, by route template: the gateway's route, and the service's own (the same path).
    labels = {"route": "/api/v1/orders/process", "method": "POST", "status": "200"}
    for service in ("gateway", "orders"):
        assert delta(before, after, service, f"{HTTP}_count", **labels) == 1, service
        assert delta(before, after, service, f"{HTTP}_bucket", le="+Inf", **labels) == 1, service
        assert delta(before, after, service, f"{HTTP}_sum", **labels) > 0, service
    address = {"route": "/api/v1/orders/{id}/shipping/address", "method": "PUT", "status": "200"}
    assert delta(before, after, "orders", f"{HTTP}_count", **address) == 1
    routes = {
        sample.labels["route"]
        for families in after.values()
        for sample in families[HTTP].samples
        if "route" in sample.labels
    }
    assert not any(outcome.order_id in route for route in routes), "a raw path became a label"

    # Every consumer on the saga's way handled its event.
    for service, event in (
        ("basket", OrderStockRequested),
        ("orders", StockReserved),
        ("payments", OrderChargeRequested),
        ("orders", PaymentCaptured),
        ("shipping", OrderPlaced),
    ):
        assert delta(before, after, service, HANDLED, **handled(event)) >= 1, (service, event.type)
        assert delta(before, after, service, "commerce_event_handling_duration_seconds_sum", **handled(event)) > 0

    # Request/reply: orders asked basket for the basket, and basket answered.
    snapshot = {"request": GetBasketSnapshot.type, "outcome": "ok"}
    assert delta(before, after, "orders", "commerce_rpc_call_duration_seconds_count", **snapshot) >= 1
    assert delta(before, after, "basket", "commerce_rpc_served_duration_seconds_count", **snapshot) >= 1
    assert delta(before, after, "orders", "commerce_rpc_requests_total") >= 1

    # The saga: one attempt, through both stages, placed.
    assert delta(before, after, "orders", "commerce_checkout_started_total") == 1
    stages = "commerce_checkout_stage_duration_seconds"
    reservation = {"stage": "reservation", "outcome": "reserved"}
    payment = {"stage": "payment", "outcome": "placed"}
    assert delta(before, after, "orders", f"{stages}_count", **reservation) == 1
    assert delta(before, after, "orders", f"{stages}_count", **payment) == 1
    assert delta(before, after, "orders", "commerce_checkout_duration_seconds_count", outcome="placed") == 1
    whole = delta(before, after, "orders", "commerce_checkout_duration_seconds_sum", outcome="placed")
    for stage in (reservation, payment):
        part = delta(before, after, "orders", f"{stages}_sum", **stage)
        assert 0 < part <= whole, (stage, part, whole)

    # What the benchmark divides by placed orders.
    assert delta(before, after, "orders", "commerce_events_published_total") >= 3  # requested, charge, placed
    assert delta(before, after, "orders", "commerce_sql_statements_total") > 0


def exposed_names(families: Families) -> set[str]:
    """The sample names a family exposes, observed or not yet (a labelled metric nothing has
    counted yet shows only its HELP and TYPE)."""
    names: set[str] = set()
    for family in families.values():
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return names


async def test_the_dashboard_and_the_alerts_name_only_metrics_the_services_expose(
    checkout: tuple[Scrape, Outcome, Scrape],
):
    _, _, after = checkout
    exposed = set().union(*(exposed_names(families) for families in after.values()))
    used = metric_names(dashboard_queries() + [rule["expr"] for rule in alerts()])
    assert {"commerce_checkout_started_total", "commerce_dlq_depth", "process_cpu_seconds_total"} <= used
    assert used - exposed == set()
