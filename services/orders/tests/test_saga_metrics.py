"""The checkout saga's metrics (issue 19): each attempt started, each stage it went through with
how it ended, and the whole attempt, for every way an attempt ends. The app runs in this process,
so its registry is read directly; tests/e2e/test_metrics.py reads a placed checkout from /metrics."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from orders import sweepers
from orders.settings import OrdersSettings
from services.orders.tests.test_saga import DECLINED, VALID, Script, in_flight, process, ready_order
from services.orders.tests.testkit import FakeShipping, Peer, Store
from shared.metrics import REGISTRY

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@pytest.fixture
def peers_script(peers: dict[str, Peer]) -> Script:
    """Basket and payments answering the saga over the broker (test_saga.py's script)."""
    return Script(peers)


STAGES = "commerce_checkout_stage_duration_seconds"
ATTEMPTS = "commerce_checkout_duration_seconds"


class Counts:
    """The saga's counts now; `since()` says what changed after."""

    def __init__(self) -> None:
        self.values = self.read()

    @staticmethod
    def read() -> dict[tuple[str, ...], float]:
        values: dict[tuple[str, ...], float] = {
            ("started",): REGISTRY.get_sample_value("commerce_checkout_started_total") or 0
        }
        for stage, outcome in (
            ("reservation", "reserved"),
            ("reservation", "refused"),
            ("reservation", "timed_out"),
            ("payment", "placed"),
            ("payment", "declined"),
        ):
            labels = {"stage": stage, "outcome": outcome}
            values[(stage, outcome)] = REGISTRY.get_sample_value(f"{STAGES}_count", labels) or 0
            if outcome != "reserved":
                values[(outcome,)] = REGISTRY.get_sample_value(f"{ATTEMPTS}_count", {"outcome": outcome}) or 0
        return values

    def since(self) -> dict[tuple[str, ...], float]:
        """What changed, without what did not."""
        return {key: value - self.values[key] for key, value in self.read().items() if value != self.values[key]}


async def test_a_declined_attempt_then_a_placed_one(
    client: Any, store: Store, shipping: FakeShipping, peers_script: Script
) -> None:
    order = await ready_order(client, store, shipping)
    counts = Counts()
    assert (await process(client, order["id"], token=DECLINED)).status == 403
    assert counts.since() == {
        ("started",): 1,
        ("reservation", "reserved"): 1,
        ("payment", "declined"): 1,
        ("declined",): 1,
    }
    assert (await process(client, order["id"], token=VALID)).status == 200
    assert counts.since() == {
        ("started",): 2,
        ("reservation", "reserved"): 2,
        ("payment", "declined"): 1,
        ("declined",): 1,
        ("payment", "placed"): 1,
        ("placed",): 1,
    }
    placed = REGISTRY.get_sample_value(f"{ATTEMPTS}_sum", {"outcome": "placed"})
    charged = REGISTRY.get_sample_value(f"{STAGES}_sum", {"stage": "payment", "outcome": "placed"})
    assert placed is not None and charged is not None and placed >= charged > 0


async def test_a_refused_reservation(client: Any, store: Store, shipping: FakeShipping, peers_script: Script) -> None:
    peers_script.stock = "refuse"
    order = await ready_order(client, store, shipping)
    counts = Counts()
    assert (await process(client, order["id"])).status == 422
    assert counts.since() == {("started",): 1, ("reservation", "refused"): 1, ("refused",): 1}


async def test_a_reservation_that_timed_out(
    app_factory: Any,
    settings: OrdersSettings,
    responders: None,
    store: Store,
    shipping: FakeShipping,
    pool: asyncpg.Pool,
) -> None:
    counts = Counts()
    await in_flight(app_factory, settings, store, shipping)
    swept = await sweepers.sweep_stalled_once(pool, settings.model_copy(update={"stock_reservation_timeout": 0}))
    assert swept >= 1
    assert counts.since() == {("started",): 1, ("reservation", "timed_out"): swept, ("timed_out",): swept}
