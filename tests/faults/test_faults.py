"""Attacks under load: kill any process, restart the broker and the database, break the network,
crash a consumer between commit and ack. After each: nothing lost, nothing twice.

Each scenario runs a bounded stream of careful shoppers (idempotency keys, retries) against the
fault suite's own system, injects one fault while they run, waits for the system to settle, and
checks the books (tests/faults/books.py). `FAULT_CHECKOUTS` / `FAULT_SHOPPERS` make it a soak.
"""

from __future__ import annotations

import asyncio
import shutil
import signal

import pytest

from tests.faults.conftest import (
    CHECKOUTS,
    FaultStack,
    assert_books,
    broker_ready,
    in_thread,
    pg_ready,
    postgres_version,
    run,
    run_scenario,
)
from tests.support import ALL_SERVICES

pytestmark = pytest.mark.timeout(400)


@pytest.mark.parametrize("service", ALL_SERVICES)
async def test_kill_9_of_a_service_loses_nothing(faults: FaultStack, service: str):
    process = faults.stack[service]

    async def kill_and_restart() -> int:
        await in_thread(process.stop, signal.SIGKILL)
        await asyncio.sleep(2)
        await in_thread(process.start)
        await in_thread(process.wait_ready, 60)
        return 1

    scenario = await run_scenario(faults, f"kill -9 {service}", kill_and_restart)
    # Only the gateway's own death resets the shoppers' connections; every other fault must be
    # answered by the gateway in the GetCandy shape.
    assert_books(scenario, client_resets_allowed=service == "gateway")


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs a local RabbitMQ node")
async def test_broker_stopped_and_started_again_loses_nothing(faults: FaultStack):
    async def restart_broker() -> int:
        await in_thread(run, "rabbitmqctl", "shutdown")
        await asyncio.sleep(2)
        # As .ci/run starts it; left running.
        await in_thread(run, "rabbitmq-server", "-detached")
        await in_thread(broker_ready)
        for name in ("basket", "orders", "shipping", "payments"):
            await in_thread(faults.stack[name].wait_ready, 60)
        return 1

    assert_books(await run_scenario(faults, "broker restart", restart_broker))


@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None, reason="needs a local Postgres cluster")
async def test_database_restarted_loses_nothing(faults: FaultStack):
    async def restart_postgres() -> int:
        await in_thread(run, "pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", "restart")
        await in_thread(pg_ready)
        return 1

    assert_books(await run_scenario(faults, "postgres restart", restart_postgres))


async def test_slow_dropped_and_stalled_network_loses_nothing(faults: FaultStack):
    async def break_the_network() -> int:
        injected = 0
        faults.pg_proxy.latency = faults.amqp_proxy.latency = 0.02
        await asyncio.sleep(2)
        faults.pg_proxy.latency = faults.amqp_proxy.latency = 0.0
        injected += faults.amqp_proxy.drop_all()
        await asyncio.sleep(2)
        injected += faults.pg_proxy.drop_all()
        await asyncio.sleep(2)
        # Longer than the request/reply deadline (3 s) and the checkout deadline (5 s here).
        faults.amqp_proxy.stall(6)
        await asyncio.sleep(7)
        faults.pg_proxy.stall(4)
        await asyncio.sleep(5)
        return injected + 3

    assert_books(await run_scenario(faults, "network faults", break_the_network))


async def test_consumer_crashing_after_commit_before_ack_loses_nothing(faults: FaultStack):
    """The basket process dies after every first delivery's commit; a supervisor restarts it."""
    basket = faults.stack["basket"]
    crashes = 0
    stop = asyncio.Event()

    async def supervise() -> None:
        """Restart the basket whenever it died, as Kubernetes or systemd would."""
        nonlocal crashes
        while not stop.is_set():
            if basket.command and basket.process is not None and basket.process.poll() is not None:
                crashes += basket.process.returncode == 70
                await in_thread(basket.start)
            await asyncio.sleep(0.1)

    async def swap_in_crashing_consumer() -> int:
        await in_thread(basket.stop)
        basket.command = ["tests.faults.crash_before_ack", "basket"]
        await in_thread(basket.start)  # it may die at once on a waiting message: the supervisor restarts it
        return 1

    supervisor = asyncio.create_task(supervise())
    try:
        # Every message costs a process restart here: fewer checkouts keep the scenario short.
        checkouts = max(6, CHECKOUTS // 2)
        scenario = await run_scenario(
            faults, "consumer crash before ack", swap_in_crashing_consumer, inject_after=0, checkouts=checkouts
        )
    finally:
        stop.set()
        await supervisor
        basket.command = None
        await in_thread(basket.stop)
        await in_thread(basket.start)
        await in_thread(basket.wait_ready, 60)
    assert crashes > 0, "the consumer never crashed"
    scenario.faults_injected += crashes
    faults.results[-1] = scenario.summary()
    print(f"\n{scenario.summary()}")
    assert_books(scenario)
