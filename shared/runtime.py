"""What every service process shares: resources in `cleanup_ctx`, health, logging, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from shared import bus, db, http, idempotency, identity, metrics, tracing, uow
from shared.outbox import Relay
from shared.settings import ServiceSettings
from shared.uow import UnitOfWork

SETTINGS = web.AppKey("settings", ServiceSettings)
POOL = web.AppKey("pool", db.Pool)
BROKER = web.AppKey("broker", AbstractRobustConnection)
RELAY = web.AppKey("relay", Relay)
CONSUMER = web.AppKey("consumer", bus.EventConsumer)
DEAD_LETTERS = web.AppKey("dead_letters", metrics.QueueDepth)
RPC = web.AppKey("rpc", bus.RpcClient)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
T = TypeVar("T")
# What a service wires into its app (subscriptions, responders), built once the app's resources
# exist, so that handlers can close over them.
Wiring = Callable[[web.Application], Sequence[T]]


def create_service_app(
    settings: ServiceSettings,
    *,
    routes: Sequence[web.RouteDef],
    subscriptions: Wiring[bus.Subscription] | None = None,
    responders: Wiring[bus.Responder] | None = None,
    asks_other_services: bool = False,
    resources: Sequence[CleanupCtx] = (),
    background: Sequence[CleanupCtx] = (),
) -> web.Application:
    """The app of every domain service: one factory, so that learning one service teaches all.

    Resources start in this order and stop in reverse: the database pool, the service's own
    `resources`, the broker, the outbox relay, the request/reply client (`asks_other_services`),
    the event consumer (`subscriptions`), the request/reply server (`responders`), then the
    `background` tasks (sweepers).
    """
    # The body is checked (http.body_middleware) before an Idempotency-Key claims anything for it.
    app = web.Application(
        middlewares=[
            access_log_middleware,
            *http.standard_middlewares(),
            http.body_middleware(settings.body_timeout),
            idempotency.middleware(),
        ]
    )
    app[SETTINGS] = settings
    app[identity.SIGNING_KEY] = settings.identity_signing_key
    wiring = [database(settings), *resources, broker(settings), outbox_relay(settings)]
    if asks_other_services:
        wiring.append(rpc_client(settings))
    if subscriptions is not None:
        wiring.append(event_consumer(settings, subscriptions))
    if responders is not None:
        wiring.append(rpc_server(settings, responders))
    app.cleanup_ctx.extend([*wiring, *background])
    add_health_routes(app)
    app.router.add_routes(routes)
    return app


def database(settings: ServiceSettings) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await db.create_pool(settings)
        yield
        try:
            await asyncio.wait_for(app[POOL].close(), timeout=settings.shutdown_timeout)
        except TimeoutError:
            app[POOL].terminate()  # a handler still holds a connection: do not outlive the grace period

    return ctx


def broker(settings: ServiceSettings) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[BROKER] = await bus.connect(settings)
        yield
        await app[BROKER].close()

    return ctx


def outbox_relay(settings: ServiceSettings) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        relay = Relay(
            app[POOL],
            settings.db_schema,
            bus.Topology.from_settings(settings).events_exchange,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval,
            listen_dsn=settings.database_url,
        )
        await relay.start(app[BROKER])
        app[RELAY] = relay
        yield
        await relay.stop()

    return ctx


def unit_of_work(request: web.Request) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
    """The request's unit of work (see `shared.uow`): its events carry the request id."""
    app = request.app
    return uow.unit_of_work(
        app[POOL], app[SETTINGS].service, correlation_id=http.request_id(request), relay=app.get(RELAY)
    )


def event_consumer(settings: ServiceSettings, subscriptions: Wiring[bus.Subscription]) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        consumer = bus.EventConsumer(
            app[POOL],
            bus.Topology.from_settings(settings),
            subscriptions(app),
            prefetch=settings.bus_prefetch,
            relay=app.get(RELAY),
        )
        await consumer.start(app[BROKER])
        app[CONSUMER] = consumer
        app[DEAD_LETTERS] = metrics.QueueDepth(app[BROKER], consumer.topology.dead_letter_queue())
        yield
        await app[DEAD_LETTERS].close()
        await consumer.stop()

    return ctx


def rpc_server(settings: ServiceSettings, responders: Wiring[bus.Responder]) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        server = bus.RpcServer(bus.Topology.from_settings(settings), responders(app), prefetch=settings.bus_prefetch)
        await server.start(app[BROKER])
        yield
        await server.stop()

    return ctx


def rpc_client(settings: ServiceSettings) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client = bus.RpcClient(bus.Topology.from_settings(settings), settings.rpc_timeout)
        await client.start(app[BROKER])
        app[RPC] = client
        yield
        await client.stop()

    return ctx


async def live(request: web.Request) -> web.Response:
    return http.json_response({"status": "live"})


async def ready(request: web.Request) -> web.Response:
    """Ready only when the database and the broker answer."""
    app = request.app
    checks: dict[str, str] = {}
    if POOL in app:
        try:
            async with asyncio.timeout(1.0):
                with tracing.untraced():  # a probe every few seconds is no trace
                    await app[POOL].fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = type(exc).__name__
    if BROKER in app:
        connection = app[BROKER]
        checks["broker"] = "ok" if not connection.is_closed and connection.connected.is_set() else "down"
    ok = all(value == "ok" for value in checks.values())
    return http.json_response({"status": "ready" if ok else "not-ready", "checks": checks}, status=200 if ok else 503)


async def scrape(request: web.Request) -> web.Response:
    """The process's metrics in the Prometheus text format, with the gauges read now: the outbox,
    the dead-letter queue and the pool (`shared.metrics`)."""
    app = request.app
    gauges = await metrics.scrape_gauges(app.get(POOL), app.get(DEAD_LETTERS))
    return web.Response(
        body=metrics.exposition(app[SETTINGS].service, gauges), headers={"Content-Type": metrics.CONTENT_TYPE}
    )


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", scrape)


class JsonFormatter(logging.Formatter):
    _skip = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # The request id, the work's ids, the trace and span ids; the record's own fields win.
        entry.update(tracing.log_fields())
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: ServiceSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {settings.service} %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)


ACCESS_LOG = logging.getLogger("access")
# Any other method (a client may send any token) is counted as "other": labels stay few.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(request: web.Request) -> str:
    """The matched resource's path template (`/orders/{id}`), never the raw path: one series per
    route, whatever the ids. "unmatched" when no route matched (404, 405)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def access_log_middleware(request: web.Request, handler: http.Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        method = request.method if request.method in _METHODS else "other"
        metrics.HTTP_REQUESTS.labels(route_template(request), method, str(status)).observe(
            time.perf_counter() - started
        )
        # Only build the record when it is written (at WARNING, the usual production level under
        # load, this middleware is a histogram and nothing more).
        if ACCESS_LOG.isEnabledFor(logging.INFO):
            _log_access(request, status, started)


def _log_access(request: web.Request, status: int, started: float) -> None:
    ACCESS_LOG.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "route": route_template(request),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "request_id": http.request_id(request),
        },
    )


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def refuse_unsafe_production(settings: ServiceSettings, command: str) -> None:
    """In production, exit before anything starts when a setting the command uses is unsafe: one
    log line naming each such setting, never its value.

    `serve` and `seed` check every key, the broker user and the providers
    (`production_problems`); `migrate` holds none of those (least privilege: compose and the
    cluster give the migration job only its DSN), so it checks what it does use
    (`migration_problems`)."""
    if settings.environment != "production":
        return
    problems = settings.migration_problems() if command == "migrate" else settings.production_problems()
    if problems:
        logging.getLogger(settings.service).critical("refusing to start in production: " + "; ".join(problems))
        sys.exit(78)  # EX_CONFIG


def main(
    settings_cls: type[ServiceSettings],
    create_app: Callable[[Any], web.Application],
    migrations_dir: Path | None,
    seed: Callable[[Any], Awaitable[None]] | None = None,
    argv: list[str] | None = None,
) -> None:
    """`python -m <service> [serve|migrate|seed]`."""
    parser = argparse.ArgumentParser(prog=f"python -m {settings_cls.service}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "seed"])
    args = parser.parse_args(argv)
    settings = settings_cls()
    configure_logging(settings)
    refuse_unsafe_production(settings, args.command)
    install_uvloop()
    if args.command == "migrate":
        if migrations_dir is None:
            return
        applied = asyncio.run(db.migrate(settings, migrations_dir))
        logging.getLogger(settings.service).info("migrated", extra={"applied": applied})
    elif args.command == "seed":
        if seed is not None:
            asyncio.run(seed(settings))
    else:
        tracing.setup(settings.service)  # before the app: its instrumentation applies to apps made after
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout,
            access_log=None,
            print=None,
        )
