"""`make bench`: the documented checkout under load, with the stack's own limits in the same run.

Starts its own system (a fresh database and bus namespace, all five services, demo data) on
loopback, then measures, in order:

1. the stack's limits: a bare aiohttp JSON handler, a bare aiohttp + asyncpg write, confirmed
   persistent publishes with aio-pika;
2. checkouts per second with N concurrent shoppers (peak, closed loop), then latency at half load:
   shoppers arriving at half the peak's rate (open loop);
3. `GET /orders/{id}` through the gateway and straight to the orders service;
4. CPU, SQL statements and broker messages per placed order (the services' `/metrics` counters;
   the statements are reported for information, no longer a target), peak RSS per service;
5. the books: every order a shopper was told was placed is placed, none in flight, outboxes
   drained, dead-letter queues empty, stock decrements equal to the quantities sold.

While it runs, a progress line on stderr at each phase and every `--progress-every` seconds
(phase, elapsed, checkouts placed so far, current rate, failed checkouts). At the end, prints a
report and writes it as JSON (`--out`) with a PNG chart beside it (throughput, process -> placed
p50/p99 and CPU by process over time). Bounded: `--duration` seconds per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from bench import chart
from bench.load import Latencies, Throughput, get, hammer, percentile, post
from bench.progress import Progress
from bench.shopper import Outcome, Shopper, pick_variants
from bench.targets import publish_rate
from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from shared import runtime
from shared.bus import Topology
from tests.support import (
    ROOT,
    SERVICES,
    Infra,
    Stack,
    free_port,
    migrate_all,
    start_infra,
    start_stack,
    stop_infra,
    stop_stack,
)

ADMIN = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
READ_ROUNDS = 2  # of the gateway and direct read measurements, alternating
TARGETS = {
    "checkouts_per_second": 100,
    "storefront_p99_ms_half_load": 50,
    "process_to_placed_p99_ms_half_load": 100,
    "gateway_read_ratio": 0.70,
    "broker_messages_per_order": 10,
    "rss_mib_per_service": 150,
}


async def scrape(session: aiohttp.ClientSession, stack: Stack) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for service in SERVICES:
        async with session.get(stack.url(service) + "/metrics") as response:
            text = await response.text()
        counters: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("commerce_") and "{" in line:
                name = line.split("{", 1)[0].removeprefix("commerce_")
                counters[name] = float(line.rsplit(" ", 1)[1])
        values[service] = counters
    return values


def delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], name: str) -> float:
    return sum(after[s].get(name, 0) - before[s].get(name, 0) for s in after)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return 0.0


def _command(pid: str) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def cpu_by_process(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each service, Postgres (all its processes), RabbitMQ and this harness."""
    usage = {name: _cpu_seconds(p.process.pid) for name, p in stack.processes.items() if p.process}
    usage["postgres"] = usage["rabbitmq"] = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        command = _command(pid)
        if command in ("postgres", "postmaster"):
            usage["postgres"] += _cpu_seconds(int(pid))
        elif command.startswith("beam"):
            usage["rabbitmq"] += _cpu_seconds(int(pid))
    usage["load generator"] = _cpu_seconds(os.getpid())
    return usage


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def prepare_catalogue(session: aiohttp.ClientSession, stack: Stack) -> list[dict[str, Any]]:
    """The demo catalogue, with stock raised so that shoppers do not run out mid-run."""
    async with session.get(stack.gateway + "/products?include=variants&per_page=100") as response:
        products = (await response.json())["data"]
    for product in products:
        for variant in product["variants"]["data"]:
            if variant.get("backorder") != "always" and variant.get("purchasable", True):
                async with session.put(
                    f"{stack.gateway}/products/variants/{variant['id']}/inventory",
                    json={"inventory": 1_000_000},
                    headers=ADMIN,
                ) as response:
                    assert response.status == 200, await response.text()
                variant["inventory"] = 1_000_000
    return products


async def inventories(session: aiohttp.ClientSession, stack: Stack, variant_ids: set[str]) -> dict[str, int]:
    result = {}
    for variant_id in variant_ids:
        async with session.get(f"{stack.gateway}/products/variants/{variant_id}") as response:
            result[variant_id] = (await response.json())["data"]["inventory"]
    return result


async def shoppers_phase(
    stack: Stack,
    products: list[dict[str, Any]],
    shoppers: int,
    duration: float,
    seed: int,
    progress: Progress,
    *,
    arrivals_per_second: float | None = None,
) -> dict[str, Any]:
    """Closed loop (`shoppers` each start their next checkout when the last one ended: the peak), or
    open loop (a new shopper arrives every 1/`arrivals_per_second` s whatever the others are doing:
    a given load, the way real customers arrive)."""
    latencies = Latencies()
    outcomes: list[Outcome] = []
    progress.follow(outcomes)
    rng = random.Random(seed)
    stop_at = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=max(shoppers * 2, 64))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def checkout() -> None:
            product = rng.choice(products)
            lines = pick_variants(products, rng, rng.choice((2, 3)))
            client = Shopper(session, stack.gateway, latencies)
            outcomes.append(await client.checkout(lines, browse_product=product["id"]))

        async def shopper() -> None:
            while time.perf_counter() < stop_at:
                await checkout()

        async def arrivals(rate: float) -> None:
            arrived: list[asyncio.Task] = []
            next_at = time.perf_counter()
            while next_at < stop_at:
                arrived.append(asyncio.create_task(checkout()))
                next_at += 1 / rate
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await asyncio.gather(*arrived)

        started = time.perf_counter()
        if arrivals_per_second:
            await arrivals(arrivals_per_second)
        else:
            await asyncio.gather(*(shopper() for _ in range(shoppers)))
        elapsed = time.perf_counter() - started
    placed = [o for o in outcomes if o.placed]
    process_ms = [o.process_to_placed_ms for o in placed if o.process_to_placed_ms is not None]
    storefront = latencies.summary()
    return {
        "shoppers": shoppers,
        "arrivals_per_second": arrivals_per_second,
        "seconds": round(elapsed, 1),
        "checkouts_attempted": len(outcomes),
        "checkouts_placed": len(placed),
        "checkouts_per_second": round(len(placed) / elapsed, 1),
        "failures": [o.error for o in outcomes if not o.placed][:10],
        "failed_count": len(outcomes) - len(placed),
        "process_to_placed_ms": {
            "p50": round(percentile(process_ms, 50), 1),
            "p95": round(percentile(process_ms, 95), 1),
            "p99": round(percentile(process_ms, 99), 1),
        },
        "endpoints": storefront,
        "storefront_p99_ms_max": max((v["p99_ms"] for k, v in storefront.items() if "process" not in k), default=0),
        "_outcomes": outcomes,
    }


async def stack_limits(infra: Infra, duration: float, concurrency: int) -> dict[str, Any]:
    json_port, write_port = free_port(), free_port()
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.targets", "json", str(json_port), cwd=ROOT),
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.targets", "write", str(write_port), infra.admin_dsn, cwd=ROOT
        ),
    ]
    try:
        for port in (json_port, write_port):
            await _wait_port(port)
        bare_json = await hammer(get(f"http://127.0.0.1:{json_port}/json"), concurrency=concurrency, duration=duration)
        bare_write = await hammer(
            post(f"http://127.0.0.1:{write_port}/write", b'{"order": "x"}'), concurrency=concurrency, duration=duration
        )
    finally:
        for process in processes:
            process.terminate()
            await process.wait()
    publishes = await publish_rate(infra.amqp_url, infra.namespace, duration=duration)
    return {
        "bare_json": bare_json.as_dict(),
        "bare_write": bare_write.as_dict(),
        "confirmed_publishes": publishes,
    }


async def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await asyncio.sleep(0.3)  # the write target creates its table on start-up
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"port {port} not listening")


async def check_books(stack: Stack, outcomes: list, sold_before: dict[str, int], sold_after: dict[str, int]) -> dict:
    problems: list[str] = []
    told_placed = [o.order_id for o in outcomes if o.placed]
    conn = await asyncpg.connect(stack.infra.admin_dsn)
    try:
        deadline = time.monotonic() + 30
        while True:
            in_flight = await conn.fetchval("SELECT count(*) FROM orders.orders WHERE status = 'payment-processing'")
            backlog = 0
            for service in SERVICES:
                backlog += await conn.fetchval(f"SELECT count(*) FROM {service}.outbox")
            if (in_flight == 0 and backlog == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        not_placed = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::text[]) AS t(id) "
            "LEFT JOIN orders.orders o ON o.id = t.id WHERE o.placed_at IS NULL",
            told_placed,
        )
        if not_placed:
            problems.append(f"{not_placed} orders told placed are not placed")
        if in_flight:
            problems.append(f"{in_flight} orders still in flight")
        if backlog:
            problems.append(f"{backlog} outbox rows not published")
    finally:
        await conn.close()
    connection = await aio_pika.connect(stack.infra.amqp_url)
    try:
        channel = await connection.channel()
        for service in SERVICES:
            queue = await channel.declare_queue(
                Topology(stack.infra.namespace, service).dead_letter_queue(), passive=True
            )
            if queue.declaration_result.message_count:
                problems.append(f"{service} DLQ holds {queue.declaration_result.message_count} messages")
    finally:
        await connection.close()
    sold: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        if outcome.placed:
            for variant_id, quantity in outcome.lines:
                sold[variant_id] += quantity
    for variant_id, before in sold_before.items():
        decrement = before - sold_after[variant_id]
        if decrement != sold[variant_id]:
            problems.append(f"variant {variant_id}: stock down {decrement}, sold {sold[variant_id]}")
    return {"ok": not problems, "problems": problems, "orders_told_placed": len(told_placed)}


async def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    ticker = asyncio.create_task(progress.run())
    progress.phase("start the system")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    infra = await asyncio.to_thread(start_infra)
    stack = None
    try:
        await migrate_all(infra)
        env = {f"{s.upper()}_LOG_LEVEL": args.log_level for s in ("gateway", *SERVICES)}
        stack = await asyncio.to_thread(start_stack, infra, log_dir, env)
        progress.cpu = functools.partial(cpu_by_process, stack)
        report: dict[str, Any] = {"config": vars(args), "logs": str(log_dir), "targets": TARGETS}
        progress.phase("stack limits")
        report["limits"] = await stack_limits(infra, args.limit_duration, args.concurrency)
        progress.phase("catalogue")
        async with aiohttp.ClientSession() as session:
            products = await prepare_catalogue(session, stack)
            variant_ids = {v["id"] for p in products for v in p["variants"]["data"]}
            before = await inventories(session, stack, variant_ids)
            metrics_before = await scrape(session, stack)
        progress.phase("peak")
        cpu_before = cpu_by_process(stack)
        peak = await shoppers_phase(stack, products, args.shoppers, args.duration, seed=1, progress=progress)
        cpu_after = cpu_by_process(stack)
        async with aiohttp.ClientSession() as session:
            metrics_after = await scrape(session, stack)
        # Half the peak's throughput, arriving at a steady rate: latency at half load, not at saturation.
        half_rate = max(peak["checkouts_per_second"] / 2, 0.5)
        progress.phase("half load")
        half = await shoppers_phase(
            stack, products, 0, args.duration, seed=2, progress=progress, arrivals_per_second=half_rate
        )
        outcomes = peak.pop("_outcomes") + half.pop("_outcomes")
        placed_peak = peak["checkouts_placed"] or 1
        report["peak"] = peak
        report["half_load"] = half
        report["per_order"] = {
            "sql_statements": round(delta(metrics_before, metrics_after, "sql_statements_total") / placed_peak, 1),
            "sql_statements_by_service": {
                service: round(
                    (
                        metrics_after[service].get("sql_statements_total", 0)
                        - metrics_before[service].get("sql_statements_total", 0)
                    )
                    / placed_peak,
                    1,
                )
                for service in metrics_after
            },
            "broker_messages": round(
                (
                    delta(metrics_before, metrics_after, "events_published_total")
                    + 2 * delta(metrics_before, metrics_after, "rpc_requests_total")
                )
                / placed_peak,
                1,
            ),
        }
        # Postgres backends that ended during the phase are missed; the services' pools keep theirs.
        report["cpu_ms_per_order"] = {
            name: round((cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / placed_peak, 1) for name in cpu_after
        }
        report["cpu_ms_per_order"]["total"] = round(sum(report["cpu_ms_per_order"].values()), 1)
        order_id = next((o.order_id for o in outcomes if o.placed), None)
        progress.phase("reads")
        if order_id:
            # Alternating rounds: whatever the box does in the background (autovacuum after the
            # shoppers' inserts, another tenant) weighs on both sides alike.
            through, direct = [], []
            for _ in range(READ_ROUNDS):
                for runs, url in (
                    (through, f"{stack.gateway}/orders/{order_id}"),
                    (direct, f"{stack.url('orders')}/api/v1/orders/{order_id}"),
                ):
                    runs.append(await hammer(get(url), concurrency=args.concurrency, duration=args.limit_duration))
            gateway_reads, direct_reads = Throughput.combined(through), Throughput.combined(direct)
            report["reads"] = {
                "gateway": gateway_reads.as_dict(),
                "direct": direct_reads.as_dict(),
                "gateway_ratio": round(gateway_reads.per_second / direct_reads.per_second, 2)
                if direct_reads.per_second
                else 0,
                "gateway_ratio_by_round": [
                    round(t.per_second / d.per_second, 2) if d.per_second else 0
                    for t, d in zip(through, direct, strict=True)
                ],
            }
        report["rss_mib"] = {name: peak_rss_mib(p.process.pid) for name, p in stack.processes.items() if p.process}
        progress.phase("books")
        async with aiohttp.ClientSession() as session:
            after = await inventories(session, stack, variant_ids)
        report["books"] = await check_books(stack, outcomes, before, after)
        limits = report["limits"]
        report["ratios"] = {
            "checkout_requests_vs_bare_write": round(
                peak["checkouts_per_second"] * 11 / max(limits["bare_write"]["requests_per_second"], 1), 3
            ),
            "gateway_reads_vs_bare_json": round(
                report.get("reads", {}).get("gateway", {}).get("requests_per_second", 0)
                / max(limits["bare_json"]["requests_per_second"], 1),
                3,
            ),
            "broker_messages_per_second_vs_publish_limit": round(
                peak["checkouts_per_second"]
                * report["per_order"]["broker_messages"]
                / max(limits["confirmed_publishes"]["publishes_per_second"], 1),
                3,
            ),
        }
        return report
    finally:
        progress.phase("stop the system")
        progress.cpu = None  # the processes are going away
        if stack is not None:
            await asyncio.to_thread(stop_stack, stack)
        await asyncio.to_thread(stop_infra, infra)
        ticker.cancel()


def render(report: dict[str, Any]) -> str:
    peak, half, limits = report["peak"], report["half_load"], report["limits"]
    lines = [
        "== commerce benchmark (loopback, this machine) ==",
        f"limits: bare JSON {limits['bare_json']['requests_per_second']} req/s, "
        f"bare write {limits['bare_write']['requests_per_second']} req/s, "
        f"confirmed publishes {limits['confirmed_publishes']['publishes_per_second']}/s",
        f"peak ({peak['shoppers']} shoppers): {peak['checkouts_per_second']} placed checkouts/s "
        f"({peak['checkouts_placed']} placed, {peak['failed_count']} failed), "
        f"process->placed p99 {peak['process_to_placed_ms']['p99']} ms",
        f"half load ({half['arrivals_per_second']:.1f} arrivals/s): {half['checkouts_per_second']} checkouts/s, "
        f"storefront p99 max {half['storefront_p99_ms_max']} ms, "
        f"process->placed p99 {half['process_to_placed_ms']['p99']} ms",
    ]
    for name, values in half["endpoints"].items():
        lines.append(f"  {name:<42} p50 {values['p50_ms']:>7} p95 {values['p95_ms']:>7} p99 {values['p99_ms']:>7} ms")
    if "reads" in report:
        reads = report["reads"]
        lines.append(
            f"reads GET /orders/{{id}}: gateway {reads['gateway']['requests_per_second']} req/s, "
            f"direct {reads['direct']['requests_per_second']} req/s, ratio {reads['gateway_ratio']} "
            f"(by round {', '.join(map(str, reads['gateway_ratio_by_round']))})"
        )
    lines.append(
        f"per placed order: {report['per_order']['sql_statements']} SQL statements, "
        f"{report['per_order']['broker_messages']} broker messages "
        f"(statements by service: {report['per_order']['sql_statements_by_service']})"
    )
    cpu = report["cpu_ms_per_order"]
    lines.append("CPU ms per placed order (peak): " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    lines.append("peak RSS MiB: " + ", ".join(f"{k} {v}" for k, v in report["rss_mib"].items()))
    lines.append("ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items()))
    books = report["books"]
    lines.append(f"books: {'OK' if books['ok'] else 'NOT OK'} ({books['orders_told_placed']} orders told placed)")
    lines += [f"  ! {p}" for p in books["problems"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--shoppers", type=int, default=32, help="concurrent shoppers at peak")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per shopper phase")
    parser.add_argument("--limit-duration", type=float, default=5.0, help="seconds per limit/read measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="connections for the limit and read runs")
    parser.add_argument("--log-level", default="WARNING", help="services' log level (INFO adds access logs)")
    parser.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for the test suite")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    if args.smoke:
        args.shoppers, args.duration, args.limit_duration, args.concurrency = 4, 3.0, 1.0, 4
        args.progress_every = 1.0
    runtime.install_uvloop()  # the load generator shares the cores: as light as the services
    progress = Progress(sys.stderr, args.progress_every)
    report = asyncio.run(run(args, progress))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report["chart"] = str(args.out.with_suffix(".png"))
    args.out.write_text(json.dumps(report, indent=2, default=str))
    chart.draw(progress, args.out.with_suffix(".png"))
    print(render(report))
    print(f"\nreport: {args.out}\nchart: {report['chart']}")
    sys.exit(0 if report["books"]["ok"] else 1)


if __name__ == "__main__":
    main()
