"""docker-compose.yml: valid against the Compose Specification, and wired the way the services need."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from shared.settings import KNOWN_DEV_SECRETS
from tests.deploy.common import (
    MIGRATING,
    PORTS,
    ROOT,
    SCHEMAS,
    SERVICES,
    SHUTDOWN_MARGIN,
    dockerignore,
    drain_after_http,
    env_prefix,
    longest_request,
    settings_class,
    unknown_settings,
)

INFRA = ("postgres", "rabbitmq")
# The services' tracing collector: nothing depends on it, and its image has no shell nor HTTP
# client to run a health check with.
COLLECTOR = "otel-collector"
# One-shot infrastructure steps: the services' broker users (tests/deploy/test_broker_users.py).
INFRA_STEPS = ("rabbitmq-users",)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def one_shots(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("restart") == "no"}


def long_running(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("restart") != "no"}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * units[unit]
    assert total > 0, duration
    return total


def test_matches_the_compose_specification(compose: dict[str, Any], validator) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_what_compose_would_reject(compose: dict[str, Any], validator) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["basket"]["helthcheck"] = broken["services"]["basket"].pop("healthcheck")
    assert any("helthcheck" in e.message for e in validator.iter_errors(broken))
    broken = copy.deepcopy(compose)
    broken["services"]["basket"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert list(validator.iter_errors(broken))


def test_the_expected_services(compose: dict[str, Any]) -> None:
    expected = {
        *INFRA,
        *INFRA_STEPS,
        COLLECTOR,
        *SERVICES,
        *(f"{s}-migrate" for s in MIGRATING),
        *(f"{s}-seed" for s in MIGRATING),
    }
    assert set(compose["services"]) == expected
    assert set(one_shots(compose)) == {*INFRA_STEPS, *(n for n in expected if n.endswith(("-migrate", "-seed")))}


def test_every_dependency_exists_with_a_condition_that_can_be_met(compose: dict[str, Any]) -> None:
    services = compose["services"]
    shots = one_shots(compose)
    for name, svc in services.items():
        for target, spec in svc.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            wanted = "service_completed_successfully" if target in shots else "service_healthy"
            assert spec == {"condition": wanted}, f"{name} -> {target}"
            if wanted == "service_healthy":
                assert "test" in services[target].get("healthcheck", {}), f"{target} has no health check"


def test_long_running_services_have_health_checks_and_restart(compose: dict[str, Any]) -> None:
    for name, svc in long_running(compose).items():
        assert svc["restart"] == "unless-stopped", name
        if name == COLLECTOR:
            continue
        check = svc["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1, name
        assert not check.get("disable", False), name
    for name, svc in one_shots(compose).items():
        assert svc["healthcheck"] == {"disable": True}, f"{name}: the image's HEALTHCHECK means nothing for a step"


def test_application_health_checks_ask_their_own_ready_endpoint(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        command = " ".join(compose["services"][service]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{PORTS[service]}/health/ready" in command


def test_migrations_then_seed_then_the_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service in MIGRATING:
        migrate, seed, app = services[f"{service}-migrate"], services[f"{service}-seed"], services[service]
        assert migrate["command"] == ["python", "-m", service, "migrate"]
        assert seed["command"] == ["python", "-m", service, "seed"]
        assert "command" not in app, "the image's CMD serves"
        assert migrate["image"] == seed["image"] == app["image"], "one image per service"
        assert migrate["build"] == seed["build"] == app["build"]
        assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert seed["depends_on"][f"{service}-migrate"] == {"condition": "service_completed_successfully"}
        assert app["depends_on"][f"{service}-seed"] == {"condition": "service_completed_successfully"}
        for infra in INFRA:
            assert app["depends_on"][infra] == {"condition": "service_healthy"}
        for step in INFRA_STEPS:
            assert (
                seed["depends_on"][step] == app["depends_on"][step] == {"condition": "service_completed_successfully"}
            )
    gateway = services["gateway"]["depends_on"]
    assert gateway == {s: {"condition": "service_healthy"} for s in MIGRATING}


def test_each_image_is_built_from_the_one_dockerfile_naming_its_service(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        build = compose["services"][service]["build"]
        assert build == {"context": ".", "dockerfile": "Dockerfile", "args": {"SERVICE": service}}
        assert (ROOT / build["dockerfile"]).is_file()
        assert compose["services"][service]["image"] == f"commerce/{service}:local"


def test_environment_names_real_settings_and_wires_the_right_roles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        service = name.split("-")[0]
        if service in INFRA or name == COLLECTOR:
            continue
        env = svc.get("environment", {})
        assert isinstance(env, dict), name
        assert unknown_settings(service, list(env)) == [], name
        prefix = env_prefix(service)
        if f"{prefix}DATABASE_URL" in env:
            dsn = urlsplit(env[f"{prefix}DATABASE_URL"])
            assert dsn.username == settings_class(service)().runtime_role == f"{service}_app"
            assert (dsn.hostname, dsn.port, dsn.path) == ("postgres", 5432, "/commerce")
        if f"{prefix}MIGRATE_DATABASE_URL" in env:
            dsn = urlsplit(env[f"{prefix}MIGRATE_DATABASE_URL"])
            assert (dsn.username, dsn.hostname, dsn.path) == ("postgres", "postgres", "/commerce")
        if f"{prefix}AMQP_URL" in env:
            assert AMQP_URL.fullmatch(env[f"{prefix}AMQP_URL"]), env[f"{prefix}AMQP_URL"]
    for service in MIGRATING:
        env = services[service]["environment"]
        assert {f"{env_prefix(service)}{key}" for key in ("DATABASE_URL", "AMQP_URL")} <= set(env)


def test_the_gateway_reaches_each_service_by_name_and_port(compose: dict[str, Any]) -> None:
    env = compose["services"]["gateway"]["environment"]
    for service in MIGRATING:
        assert env[f"GATEWAY_{service.upper()}_URL"] == f"http://{service}:{PORTS[service]}"
    assert env["GATEWAY_ADMIN_JWT_SECRET"] == "${GATEWAY_ADMIN_JWT_SECRET:?set it in .env}"


def test_ports_only_the_gateway_is_published_and_infrastructure_on_loopback(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # Loopback unless the operator says otherwise in .env (docker-compose.yml's header).
    assert services["gateway"]["ports"] == ["${GATEWAY_PUBLISH:-127.0.0.1:8000}:8000"]
    for service in MIGRATING:
        assert "ports" not in services[service]
        assert services[service]["expose"] == [str(PORTS[service])]
    # `make run` falls back to `docker compose up -d postgres rabbitmq` and then connects to the
    # loopback defaults of the settings: the same ports, on 127.0.0.1 only (trust auth, guest).
    assert services["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    assert services["rabbitmq"]["ports"] == ["127.0.0.1:5672:5672", "127.0.0.1:15672:15672"]


def test_infrastructure_starts_on_its_own(compose: dict[str, Any]) -> None:
    """`docker compose up -d --wait postgres rabbitmq` needs nothing else and waits for health."""
    services = compose["services"]
    for infra in INFRA:
        assert "depends_on" not in services[infra]
        assert services[infra]["healthcheck"]["test"]
        assert services[infra]["volumes"], f"{infra} keeps its data across re-creations"
    assert services["postgres"]["image"] == "postgres:15"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "commerce"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    # The settings' loopback defaults, as `make run` uses them, point at what compose publishes.
    default = settings_class("basket")()
    assert urlsplit(default.migrate_database_url).port == 5432
    assert urlsplit(default.amqp_url).port == 5672


def test_stop_grace_period_covers_the_drain(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        svc = compose["services"][service]
        shutdown = float(svc["environment"][f"{env_prefix(service)}SHUTDOWN_TIMEOUT"])
        assert shutdown > longest_request(service), f"{service}: the drain would cut in-flight requests"
        budget = shutdown + drain_after_http(service) + SHUTDOWN_MARGIN
        assert seconds(svc["stop_grace_period"]) >= budget, service


# --- production mode and secrets (issue 17) ----------------------------------------------------------

APPS = (*SERVICES, *(f"{s}-migrate" for s in MIGRATING), *(f"{s}-seed" for s in MIGRATING))
# Environment variables whose values are secrets (keys, DSNs and URLs holding passwords).
SECRET_NAMES = re.compile(r"(SECRET|_KEY$|PASSWORD|AMQP_URL)")
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
# The service's own broker user, its password from .env, the host by its compose name.
AMQP_URL = re.compile(rf"amqp://(?P<user>\w+):{REQUIRED.pattern}@rabbitmq:5672/")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines())
    return {
        name.strip(): value.strip() for name, value in (p for p in pairs if len(p) == 2) if not name.startswith("#")
    }


def test_every_service_and_step_runs_in_production(compose: dict[str, Any]) -> None:
    for name in APPS:
        assert compose["services"][name]["environment"]["COMMERCE_ENV"] == "production", name


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    """Secrets come from .env through `${VAR:?...}`: no literal, and no `${VAR:-default}` fallback."""
    for name in APPS:
        env = compose["services"][name]["environment"]
        secrets = {key: value for key, value in env.items() if SECRET_NAMES.search(key)}
        if not name.endswith("-migrate"):
            assert "IDENTITY_SIGNING_KEY" in secrets, name
        for key, value in secrets.items():
            assert ":-" not in value, (name, key)
            if key.endswith("AMQP_URL"):
                url = AMQP_URL.fullmatch(value)
                assert url and url["user"] == name.split("-")[0], (name, key, value)
                assert url[2] == f"{url['user'].upper()}_AMQP_PASSWORD", (name, key, value)
            else:
                assert REQUIRED.fullmatch(value), (name, key, value)
    assert compose["services"]["payments"]["environment"]["PAYMENTS_SANDBOX_ENABLED"] == "false"


def test_env_example_fills_every_required_variable_with_a_value_production_refuses(
    compose: dict[str, Any],
) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(REQUIRED.findall(text))
    example = env_example()
    assert required <= set(example), required - set(example)
    for name in required:
        if SECRET_NAMES.search(name):
            assert example[name] in KNOWN_DEV_SECRETS, name
    # .env itself is never committed nor sent to a build.
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert dockerignore().excluded(".env")
