"""The fault suite's own system: a fresh database and namespace, every service's database and
broker connections through a faulty proxy, and shoppers that behave like a careful frontend."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from bench.shopper import Outcome, Shopper, pick_variants
from tests.faults.books import Books, check, snapshot
from tests.faults.proxy import FaultyProxy
from tests.support import SERVICES, Infra, Stack, migrate_all, start_infra, start_stack, stop_infra, stop_stack

CHECKOUTS = int(os.environ.get("FAULT_CHECKOUTS", "12"))  # the soak: FAULT_CHECKOUTS=200 make test
SHOPPERS = int(os.environ.get("FAULT_SHOPPERS", "4"))


@dataclass
class FaultStack:
    infra: Infra
    stack: Stack
    pg_proxy: FaultyProxy
    amqp_proxy: FaultyProxy
    results: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    infra = start_infra()
    pg, amqp = urlsplit(infra.admin_dsn), urlsplit(infra.amqp_url)
    pg_proxy = FaultyProxy(pg.hostname or "127.0.0.1", pg.port or 5432).start()
    amqp_proxy = FaultyProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672).start()
    stack = None
    try:
        asyncio.run(migrate_all(infra))
        env: dict[str, str] = {}
        for service in SERVICES:
            prefix = service.upper()
            env[f"{prefix}_DATABASE_URL"] = f"postgresql://{service}_app@127.0.0.1:{pg_proxy.port}/{infra.database}"
            env[f"{prefix}_AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:{amqp_proxy.port}/"
            env[f"{prefix}_DB_COMMAND_TIMEOUT"] = "5"
        env["ORDERS_PROCESS_DEADLINE"] = "5"
        stack = start_stack(infra, tmp_path_factory.mktemp("fault-logs"), env)
        asyncio.run(_plenty_of_stock(infra))
        yield FaultStack(infra, stack, pg_proxy, amqp_proxy)
    finally:
        if stack is not None:
            stop_stack(stack)
        pg_proxy.stop()
        amqp_proxy.stop()
        stop_infra(infra)


async def _plenty_of_stock(infra: Infra) -> None:
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        await conn.execute("UPDATE basket.variants SET inventory = 100000 WHERE backorder = 'in-stock' AND purchasable")
    finally:
        await conn.close()


@dataclass
class Scenario:
    name: str
    outcomes: list[Outcome]
    shoppers: list[Shopper]
    books: Books
    faults_injected: int
    seconds: float

    def summary(self) -> dict:
        return {
            "scenario": self.name,
            "checkouts": len(self.outcomes),
            "placed": sum(o.placed for o in self.outcomes),
            "told_failed": sum(not o.placed for o in self.outcomes),
            "faults_injected": self.faults_injected,
            "told_failed_errors": sorted({(o.error or "")[:160] for o in self.outcomes if not o.placed}),
            "orders_lost": self.books.lost_orders,
            "double_charges": self.books.double_charges,
            "seconds": round(self.seconds, 1),
        }


async def run_scenario(
    faults: FaultStack,
    name: str,
    inject: Callable[[], Awaitable[int]],
    *,
    checkouts: int = CHECKOUTS,
    shoppers: int = SHOPPERS,
    inject_after: float = 1.0,
) -> Scenario:
    """Shoppers check out `checkouts` orders while `inject` runs; then the books are checked."""
    inventory_before, since = await snapshot(faults.infra)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    clients: list[Shopper] = []
    budget = checkouts
    rng = random.Random(name)
    async with aiohttp.ClientSession() as session:
        catalogue = await Shopper(session, faults.stack.gateway, retry_for=60).catalogue()

        async def shopper() -> None:
            nonlocal budget
            client = Shopper(session, faults.stack.gateway, retry_for=120, timeout=40)
            clients.append(client)
            while budget > 0:
                budget -= 1
                outcomes.append(await client.checkout(pick_variants(catalogue, rng, rng.choice((1, 2, 3)))))

        async def fault() -> int:
            await asyncio.sleep(inject_after)
            return await inject()

        fault_task = asyncio.create_task(fault())
        await asyncio.wait_for(asyncio.gather(*(shopper() for _ in range(shoppers))), timeout=240)
        injected = await asyncio.wait_for(fault_task, timeout=120)
    books = await check(faults.infra, outcomes, inventory_before, since)
    scenario = Scenario(name, outcomes, clients, books, injected, time.monotonic() - started)
    faults.results.append(scenario.summary())
    print(f"\n{scenario.summary()}")
    return scenario


def assert_books(scenario: Scenario, *, client_resets_allowed: bool = False) -> None:
    books = scenario.books
    assert books.problems == [], books.problems
    assert books.lost_orders == 0 and books.double_charges == 0
    assert scenario.faults_injected > 0, "the fault was not injected"
    placed = sum(o.placed for o in scenario.outcomes)
    assert placed > 0, [o.error for o in scenario.outcomes]
    for client in scenario.shoppers:
        assert client.malformed_errors == [], client.malformed_errors
        # 502/503/504 are honest answers during a fault; a 500 is an unhandled exception: a bug.
        errors = [r for r in client.responses if r[1] == 500]
        assert errors == [], f"500s: {errors}"
        if not client_resets_allowed:
            assert client.transport_errors == [], client.transport_errors
    for outcome in scenario.outcomes:
        assert outcome.placed or outcome.error_status is not None, outcome


async def in_thread(fn, *args):
    return await asyncio.to_thread(fn, *args)


def run(*command: str, timeout: float = 120) -> None:
    subprocess.run(command, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def postgres_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def broker_ready(timeout: float = 90) -> None:
    """Like .ci/run: the node answers `await_startup` only once it has registered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["rabbitmqctl", "-q", "await_startup"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(1)
    raise TimeoutError("RabbitMQ did not come back")


def pg_ready(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError("Postgres did not come back")
