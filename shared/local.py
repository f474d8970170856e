"""Local runner behind `make run` / `make test`: check Postgres and RabbitMQ, start the services.

`python -m shared.local check [--for-tests]`: exit 0 when both are reachable (starting them from
docker-compose.yml when a Docker engine is available), else a clear message and exit 1.
`python -m shared.local run`: the six services in the foreground, logs prefixed, Ctrl-C stops all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("basket", "orders", "shipping", "payments", "customers", "gateway")
# docker-compose.yml requires the services' secrets (from .env) to be set even when only the
# infrastructure starts; these fill them for that (no service is started with them), and leave
# RabbitMQ's user guest, which the loopback defaults of `make run` use.
INFRA_ONLY_ENV = {
    "RABBITMQ_ADMIN_USER": "guest",
    "RABBITMQ_ADMIN_PASSWORD": "guest",
    "BASKET_AMQP_PASSWORD": "unused",
    "CUSTOMERS_AMQP_PASSWORD": "unused",
    "ORDERS_AMQP_PASSWORD": "unused",
    "PAYMENTS_AMQP_PASSWORD": "unused",
    "SHIPPING_AMQP_PASSWORD": "unused",
    "IDENTITY_SIGNING_KEY": "unused",
    "GATEWAY_ADMIN_JWT_SECRET": "unused",
    "GATEWAY_ADMIN_JWT_ISSUER": "unused",
    "GATEWAY_ADMIN_JWT_AUDIENCE": "unused",
    "CUSTOMER_TOKEN_SECRET": "unused",
}


def _endpoint(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def check(for_tests: bool) -> int:
    if for_tests:
        pg_url = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        amqp_url = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    else:
        pg_url = os.environ.get("BASKET_MIGRATE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/commerce")
        amqp_url = os.environ.get("BASKET_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    wanted = {"Postgres": _endpoint(pg_url, 5432), "RabbitMQ": _endpoint(amqp_url, 5672)}
    missing = {name: hp for name, hp in wanted.items() if not _reachable(*hp)}
    if not missing:
        return 0
    if _docker_available():
        if for_tests:
            return 0  # the tests start them with testcontainers
        services = [{"Postgres": "postgres", "RabbitMQ": "rabbitmq"}[name] for name in missing]
        print(f"starting {', '.join(services)} with docker compose", flush=True)
        subprocess.run(
            ["docker", "compose", "up", "-d", "--wait", *services],
            cwd=ROOT,
            check=True,
            env=INFRA_ONLY_ENV | os.environ,
        )
        return 0
    for name, (host, port) in missing.items():
        hint = {
            "Postgres": "pg_ctlcluster --skip-systemctl-redirect 15 main start  (or: docker compose up -d postgres)",
            "RabbitMQ": "rabbitmq-server -detached  (or: docker compose up -d rabbitmq)",
        }[name]
        print(f"{name} is not reachable at {host}:{port}. Start it, e.g.: {hint}", file=sys.stderr)
    return 1


def _pump(name: str, stream, lock: threading.Lock) -> None:
    width = max(len(s) for s in SERVICES)
    for raw in iter(stream.readline, b""):
        with lock:
            sys.stdout.write(f"{name:<{width}} | {raw.decode(errors='replace')}")
            sys.stdout.flush()


def run() -> int:
    env = {"PYTHONUNBUFFERED": "1", **{f"{s.upper()}_LOG_JSON": "false" for s in SERVICES}, **os.environ}
    lock = threading.Lock()
    processes: dict[str, subprocess.Popen] = {}
    for name in SERVICES:
        # A session of their own: Ctrl-C reaches only this runner, which stops each service once,
        # gracefully, instead of the terminal's SIGINT and our SIGTERM landing one after the other.
        proc = subprocess.Popen(
            [sys.executable, "-m", name],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes[name] = proc
        threading.Thread(target=_pump, args=(name, proc.stdout, lock), daemon=True).start()

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    port = os.environ.get("GATEWAY_PORT", "8000")
    print(
        f"\n  gateway:  http://127.0.0.1:{port}/api/v1\n  docs:     http://127.0.0.1:{port}/docs\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    exit_code = 0
    while not stopping:
        for name, proc in processes.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the others", file=sys.stderr)
                exit_code = 1
                stopping = True
                break
        time.sleep(0.3)
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes.values():
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return exit_code


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.local")
    parser.add_argument("command", choices=["check", "run"])
    parser.add_argument("--for-tests", action="store_true")
    args = parser.parse_args()
    sys.exit(check(args.for_tests) if args.command == "check" else run())


if __name__ == "__main__":
    main()
