"""Scale-out on one machine: two instances of every service at once (competing consumers on each
queue, two outbox relays per outbox, requests spread by the gateway), and nothing happens twice.

The end-to-end checkout tests run here unchanged, against this folder's replicated `stack`; then
concurrent careful shoppers check out (sandbox and offline) and the books are checked.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.conftest import session  # noqa: F401  (the fixture those tests take)
from tests.e2e.test_checkout import (  # noqa: F401  (collected again here, against two instances of everything)
    test_declined_then_retried_is_placed_once_with_one_failed_and_one_captured_charge,
    test_documented_lifecycle_places_the_order,
    test_every_published_message_matches_its_contract,
    test_the_last_unit_goes_to_one_order_and_the_other_is_not_charged,
    test_twenty_concurrent_process_calls_charge_once,
)
from tests.faults.books import check, snapshot
from tests.scale.common import Run, effects_once, effects_settled, scrape, shop, total
from tests.support import SERVICES, Stack

SHOPPERS = 6
CHECKOUTS = 24
# Where the shoppers' requests land: the checkout flow calls no shipping route (orders asks
# shipping for prices over request/reply, and shipping works from events).
HTTP_SERVICES = ("basket", "orders", "payments")


def test_every_service_runs_two_instances_behind_the_gateway(stack: Stack):
    for service in SERVICES:
        instances = stack.all(service)
        assert len(instances) == 2
        assert len({p.port for p in instances}) == 2
        assert all(p.process is not None and p.process.poll() is None for p in instances)
    gateway_env = stack["gateway"].env
    for service in SERVICES:
        assert gateway_env[f"GATEWAY_{service.upper()}_URL"] == ",".join(p.url for p in stack.all(service))


@pytest.mark.timeout(180)
async def test_concurrent_checkouts_on_two_instances_happen_once_and_both_instances_work(stack: Stack):
    inventory_before, since = await snapshot(stack.infra)
    async with aiohttp.ClientSession() as http:
        before = {(s, p.port): await scrape(http, p) for s in SERVICES for p in stack.all(s)}

        run = Run()
        await shop(stack, run, shoppers=SHOPPERS, checkouts=CHECKOUTS)

        books = await check(stack.infra, run.outcomes, inventory_before, since)
        await effects_settled(stack.infra, since)
        after = {(s, p.port): await scrape(http, p) for s in SERVICES for p in stack.all(s)}

    assert len(run.outcomes) == CHECKOUTS
    failed = [o.error for o in run.outcomes if not o.placed]
    assert failed == []
    statuses = {o.status for o in run.outcomes}
    assert statuses == {"payment-received", "offline-payment"}
    # Everything the shoppers saw was a planned answer: no 5xx, no dropped connection.
    assert [r for r in run.responses() if r[1] >= 500] == []
    assert run.transport_errors() == []
    assert [c.malformed_errors for c in run.shoppers] == [[]] * SHOPPERS

    # Nothing twice: no order lost or placed twice, one capture of the order total per placed
    # order, stock down by exactly what was sold, one shipment per placed order, empty DLQs.
    assert books.problems == [], books.problems
    assert (books.orders, books.placed, books.lost_orders, books.double_charges) == (CHECKOUTS, CHECKOUTS, 0, 0)
    assert await effects_once(stack.infra, since) == []

    def delta(service: str, port: int, name: str, **labels: str) -> float:
        return total(after[(service, port)], name, **labels) - total(before[(service, port)], name, **labels)

    for service in SERVICES:
        consumed = [
            delta(service, p.port, "event_handling_duration_seconds_count", outcome="handled")
            for p in stack.all(service)
        ]
        # Competing consumers: each instance took part of the queue.
        assert all(n > 0 for n in consumed), f"{service}: events consumed per instance {consumed}"
        published = sum(delta(service, p.port, "events_published_total") for p in stack.all(service))
        assert published > 0, service
    for service in HTTP_SERVICES:
        # The gateway's round-robin: both instances answered shoppers (more than the one scrape of
        # /metrics that `before` itself adds).
        answered = [
            delta(service, p.port, "http_request_duration_seconds_count", status="2..") for p in stack.all(service)
        ]
        assert all(n > 1 for n in answered), f"{service}: requests answered per instance {answered}"
