"""Test infrastructure: a fresh database and bus namespace per run, and real service processes.

Postgres and RabbitMQ come from the environment (`TEST_DATABASE_URL`, `TEST_AMQP_URL`; loopback
by default). Only when neither is configured nor reachable and a Docker engine answers do the
tests start them with testcontainers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
import orjson

from shared.bus import Topology
from shared.identity import signed_identity_headers
from shared.settings import DEV_IDENTITY_SIGNING_KEY, ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
# The services of a guest's checkout: the ones whose queues, outboxes and books the tests count.
SERVICES = ("basket", "orders", "shipping", "payments")
# Customer accounts take no part in a guest's checkout; they are migrated, seeded and started with
# the others, behind the same gateway.
ACCOUNT_SERVICES = ("customers",)
UPSTREAMS = (*SERVICES, *ACCOUNT_SERVICES)
ALL_SERVICES = ("gateway", *UPSTREAMS)
S = TypeVar("S", bound=ServiceSettings)
RETRY_DELAYS_MS = (200, 1000, 3000)


def identity_headers(sub: str = "t", roles: tuple[str, ...] = ("admin",)) -> dict[str, str]:
    """The identity headers the gateway would send a service, signed now with the development key
    (the services under test run in development): call it per request, a signature ages."""
    return signed_identity_headers({"sub": sub, "roles": list(roles)}, DEV_IDENTITY_SIGNING_KEY)


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Infra:
    admin_dsn: str  # a superuser DSN on the run's own database
    amqp_url: str
    namespace: str
    database: str
    _containers: list[Any] = field(default_factory=list)

    @property
    def pg_hostport(self) -> str:
        return urlsplit(self.admin_dsn).netloc.rpartition("@")[2]

    def runtime_dsn(self, schema: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(netloc=f"{schema}_app@{self.pg_hostport}"))

    def settings(self, cls: type[S], **overrides: Any) -> S:
        schema = overrides.get("db_schema") or cls.service
        values: dict[str, Any] = {
            "database_url": self.runtime_dsn(schema),
            "migrate_database_url": self.admin_dsn,
            "amqp_url": self.amqp_url,
            "bus_namespace": self.namespace,
            "log_json": False,
            # The same as the stack's processes: RabbitMQ refuses to re-declare a queue with other TTLs.
            "bus_retry_delays_ms": RETRY_DELAYS_MS,
            "outbox_poll_interval": 0.5,
        }
        values.update(overrides)
        return cls(**values)

    def env_for(self, service: str, port: int) -> dict[str, str]:
        prefix = service.upper() + "_"
        env = {
            f"{prefix}PORT": str(port),
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}LOG_JSON": "true",
            f"{prefix}LOG_LEVEL": "INFO",
        }
        if service != "gateway":
            env |= {
                f"{prefix}DATABASE_URL": self.runtime_dsn(service),
                f"{prefix}MIGRATE_DATABASE_URL": self.admin_dsn,
                f"{prefix}AMQP_URL": self.amqp_url,
                f"{prefix}BUS_NAMESPACE": self.namespace,
                f"{prefix}BUS_RETRY_DELAYS_MS": str(list(RETRY_DELAYS_MS)),
                f"{prefix}OUTBOX_POLL_INTERVAL": "0.5",
                # Up to three stacks run at once in one test run (the session's, the fault suite's,
                # the bench smoke's): keep them all under Postgres's default 100 connections.
                f"{prefix}DB_POOL_MIN": "1",
                f"{prefix}DB_POOL_MAX": "4",
            }
        return env


def start_infra() -> Infra:
    pg = os.environ.get("TEST_DATABASE_URL")
    amqp = os.environ.get("TEST_AMQP_URL")
    containers: list[Any] = []
    if pg is None and not _reachable("127.0.0.1", 5432) and shutil.which("docker"):
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:15-alpine").start()
        containers.append(container)
        pg = container.get_connection_url().replace("+psycopg2", "")
    if amqp is None and not _reachable("127.0.0.1", 5672) and shutil.which("docker"):
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management").start()
        containers.append(container)
        amqp = f"amqp://guest:guest@{container.get_container_host_ip()}:{container.get_exposed_port(5672)}/"
    pg = pg or "postgresql://postgres@127.0.0.1:5432/postgres"
    amqp = amqp or "amqp://guest:guest@127.0.0.1:5672/"
    run_id = secrets.token_hex(4)
    database = f"commerce_test_{run_id}"
    admin = urlsplit(pg)
    asyncio.run(_create_database(urlunsplit(admin._replace(path="/postgres")), database))
    return Infra(
        admin_dsn=urlunsplit(admin._replace(path=f"/{database}")),
        amqp_url=amqp,
        namespace=f"t{run_id}",
        database=database,
        _containers=containers,
    )


async def _create_database(maintenance_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(maintenance_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def stop_infra(infra: Infra) -> None:
    asyncio.run(_drop_everything(infra))
    for container in infra._containers:
        container.stop()


async def _drop_everything(infra: Infra) -> None:
    maintenance = urlunsplit(urlsplit(infra.admin_dsn)._replace(path="/postgres"))
    conn = await asyncpg.connect(maintenance)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{infra.database}" WITH (FORCE)')
    finally:
        await conn.close()
    await delete_bus_namespace(infra.amqp_url, infra.namespace)


async def delete_bus_namespace(amqp_url: str, namespace: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        for service in ALL_SERVICES:
            topology = Topology(namespace, service)
            names = [topology.queue(), topology.dead_letter_queue(), topology.rpc_queue()]
            names += [topology.retry_queue(i) for i in range(1, 6)]
            for name in names:
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
                with contextlib.suppress(Exception):
                    await channel.close()
        channel = await connection.channel()
        for name in ("events", "dlx", "rpc"):
            with contextlib.suppress(Exception):
                await channel.exchange_delete(f"{namespace}.{name}")
    finally:
        await connection.close()


async def migrate_all(infra: Infra) -> None:
    from shared import db

    for service in UPSTREAMS:
        module = __import__(f"{service}.settings", fromlist=["x"])
        settings_cls = next(
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
        )
        await db.migrate(infra.settings(settings_cls), ROOT / "services" / service / service / "migrations")


# ---------------------------------------------------------------------------------------------
# Real service processes


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    command: list[str] | None = None  # what `python -m` runs; the service itself by default

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", *(self.command or [self.name])],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    infra: Infra
    processes: dict[str, ServiceProcess]  # the first (or only) instance of each service
    # Every instance of each service, `processes[name]` first (several with `start_stack(replicas=)`).
    instances: dict[str, list[ServiceProcess]] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.processes["gateway"].url + "/api/v1"

    def url(self, service: str) -> str:
        return self.processes[service].url

    def __getitem__(self, service: str) -> ServiceProcess:
        return self.processes[service]

    def all(self, service: str) -> list[ServiceProcess]:
        return self.instances.get(service) or [self.processes[service]]


def seed_all(infra: Infra, log_dir: Path) -> None:
    """Load every service's demo data (idempotent), as `make run` does."""
    for service in UPSTREAMS:
        with (log_dir / f"{service}.seed.log").open("ab") as log:
            subprocess.run(
                [sys.executable, "-m", service, "seed"],
                cwd=ROOT,
                env={**os.environ, **infra.env_for(service, 0)},
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=60,
            )


def start_stack(infra: Infra, log_dir: Path, extra_env: dict[str, str] | None = None, *, replicas: int = 1) -> Stack:
    """The six services as processes; with `replicas` > 1, that many instances of each of the five
    services (own ports, same database and bus namespace) behind one gateway that lists them all."""
    seed_all(infra, log_dir)
    ports = {name: [free_port() for _ in range(1 if name == "gateway" else replicas)] for name in ALL_SERVICES}
    instances: dict[str, list[ServiceProcess]] = {}
    gateway_env = {
        f"GATEWAY_{s.upper()}_URL": ",".join(f"http://127.0.0.1:{port}" for port in ports[s]) for s in UPSTREAMS
    }
    # Every simulated shopper comes from 127.0.0.1: a per-client limit would throttle them all as one.
    gateway_env["GATEWAY_RATE_LIMIT_RATE"] = "0"
    for name in ALL_SERVICES:
        instances[name] = []
        for index, port in enumerate(ports[name]):
            env = infra.env_for(name, port) | (extra_env or {})
            if name == "gateway":
                env |= gateway_env
            log_name = f"{name}.log" if index == 0 else f"{name}-{index + 1}.log"
            instances[name].append(ServiceProcess(name, port, env, log_dir / log_name))
    stack = Stack(infra, {name: procs[0] for name, procs in instances.items()}, instances)
    for procs in instances.values():
        for process in procs:
            process.start()
    try:
        for procs in instances.values():
            for process in procs:
                process.wait_ready(30.0 * replicas)  # several processes start at once on few cores
    except Exception:
        stop_stack(stack)
        raise
    return stack


def stop_stack(stack: Stack) -> None:
    for name in stack.processes:
        for process in stack.all(name):
            process.stop()


# ---------------------------------------------------------------------------------------------
# Watching what services really publish


class BusObserver:
    """A private queue bound to the events exchange: what the services really published. Keeps
    everything it received, so that each `collect` sees earlier messages too."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.seen: list[dict[str, Any]] = []

    async def collect(self, predicate, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The first `count` published envelopes (as dicts) matching predicate, in arrival order."""
        found = [body for body in self.seen if predicate(body)]
        if len(found) >= count:
            return found[:count]
        async with asyncio.timeout(timeout), self.queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                body = orjson.loads(message.body)
                self.seen.append(body)
                if predicate(body):
                    found.append(body)
                    if len(found) == count:
                        break
        return found


@contextlib.asynccontextmanager
async def observing(amqp_url: str, namespace: str):
    """Yields `bind(*routing_key_patterns) -> BusObserver` on the namespace's events exchange."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()

    async def bind(*patterns: str) -> BusObserver:
        exchange = await channel.declare_exchange(f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True)
        # exclusive: gone with the connection; not auto-delete, which would drop it between two collects
        queue = await channel.declare_queue(exclusive=True)
        for pattern in patterns:
            await queue.bind(exchange, pattern)
        return BusObserver(queue)

    try:
        yield bind
    finally:
        await connection.close()
