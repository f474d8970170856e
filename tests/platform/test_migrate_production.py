"""`migrate` in production checks what it uses (issue 17): the migration DSN. It is given neither
the keys nor a broker user (compose and the cluster's job hold only that DSN), and needs none.
Each command runs as `python -m <service>`, as docker compose and Kubernetes run it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.deploy.common import MIGRATING, ROOT
from tests.platform.test_production import base_environment, production_env
from tests.support import Infra

# The password of deploy/examples/secrets.yaml: anyone can read it.
PUBLISHED = "postgresql://postgres:CHANGE-ME@127.0.0.1:1/commerce"


def run(service: str, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", service, command],
        env=base_environment() | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused(done: subprocess.CompletedProcess[str], named: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 78, output  # EX_CONFIG, before anything is opened
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "refusing to start in production" in lines[0] and named in lines[0]
    assert "CHANGE-ME" not in output


@pytest.mark.parametrize("service", MIGRATING)
def test_migrate_refuses_a_migration_dsn_with_a_published_password(service: str) -> None:
    variable = f"{service.upper()}_MIGRATE_DATABASE_URL"
    done = run(service, "migrate", {"COMMERCE_ENV": "production", variable: PUBLISHED})
    assert_refused(done, variable)


@pytest.mark.parametrize("service", MIGRATING)
def test_serve_refuses_a_runtime_dsn_with_a_published_password(service: str) -> None:
    variable = f"{service.upper()}_DATABASE_URL"
    done = run(
        service, "serve", production_env(service) | {variable: PUBLISHED.replace("postgres:", f"{service}_app:")}
    )
    assert_refused(done, variable)


def test_migrate_in_production_needs_no_key_and_no_broker_user(infra: Infra) -> None:
    """The migration job's own configuration (as docker-compose.yml gives it): production, its DSN
    and nothing else. It passes the check and migrates (the run's schema is up to date already,
    so it applies nothing)."""
    done = run("basket", "migrate", {"COMMERCE_ENV": "production", "BASKET_MIGRATE_DATABASE_URL": infra.admin_dsn})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refusing" not in done.stderr
