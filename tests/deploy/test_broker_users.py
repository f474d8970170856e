"""The services' broker users as docker compose and the cluster create them (issue 17): generated
from the contract registry by `shared.broker_users`, checked in unchanged, and the same users and
passwords as the services' AMQP URLs. (The broker enforcing these rights:
tests/platform/test_broker_users.py.)"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.broker_users import (
    COMPOSE_MARKER,
    DEFAULT_NAMESPACE,
    OPERATOR_OBJECTS,
    compose_definitions,
    definitions,
    operator_manifest,
    password_variable,
    services,
)
from shared.local import INFRA_ONLY_ENV
from shared.settings import broker_user
from tests.deploy.common import ROOT, env_prefix
from tests.deploy.kustomize import load_documents, render

REGENERATE = "the registry changed: run python -m shared.broker_users --write"
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
COMPOSE_AMQP_URL = re.compile(r"amqp://(?P<user>[^:]+):\$\{(?P<password>\w+):\?[^}]*\}@rabbitmq:5672/")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_checked_in_users_are_the_ones_the_registry_generates():
    text = (ROOT / "docker-compose.yml").read_text()
    _, marker, generated = text.partition(COMPOSE_MARKER)
    assert marker, f"docker-compose.yml lacks {COMPOSE_MARKER!r}"
    assert marker + generated == compose_definitions(), REGENERATE
    assert OPERATOR_OBJECTS.read_text() == operator_manifest(), REGENERATE


def interpolate(text: str, env: dict[str, str]) -> str:
    """What compose makes of a value: `${VAR:?...}` replaced, `$$` a `$`."""
    return re.sub(r"\$\$|\$\{(\w+):\?[^}]*\}", lambda m: "$" if m[0] == "$$" else env[m[1]], text)


def test_compose_imports_every_services_user_with_its_password_from_env(compose: dict[str, Any]):
    content = compose["configs"]["rabbitmq-definitions"]["content"]
    passwords = {service: f"password-of-{service}" for service in services()}
    env = {password_variable(service): password for service, password in passwords.items()}
    assert json.loads(interpolate(content, env)) == definitions(passwords.__getitem__)

    step = compose["services"]["rabbitmq-users"]
    (mount,) = step["configs"]
    assert mount["source"] == "rabbitmq-definitions"
    assert step["command"] == ["rabbitmqctl", "--node", "rabbit@rabbitmq", "import_definitions", mount["target"]]
    assert compose["services"]["rabbitmq"]["hostname"] == "rabbitmq"
    # The same image as the node, and the node's volume: rabbitmqctl needs its Erlang cookie.
    assert step["image"] == compose["services"]["rabbitmq"]["image"]
    assert "rabbitmq-data:/var/lib/rabbitmq" in step["volumes"]
    assert step["depends_on"] == {"rabbitmq": {"condition": "service_healthy"}}


def test_each_service_connects_as_its_own_user_with_the_password_its_user_gets(compose: dict[str, Any]):
    connecting = 0
    for name, svc in compose["services"].items():
        service = name.split("-")[0]
        url = svc.get("environment", {}).get(f"{service.upper()}_AMQP_URL")
        if url is None:
            continue
        connecting += 1
        assert service in services(), f"{service} connects to the broker but the registry names it nowhere"
        parts = COMPOSE_AMQP_URL.fullmatch(url)
        assert parts is not None, (name, url)
        assert (parts["user"], parts["password"]) == (broker_user(service), password_variable(service)), name
        assert svc["depends_on"]["rabbitmq-users"] == {"condition": "service_completed_successfully"}, name
        assert env_prefix(service) == f"{service.upper()}_"
    assert connecting >= 8  # the four services and their seeds


def test_make_run_can_start_the_infrastructure_without_an_env_file():
    """`shared.local` starts postgres and rabbitmq alone with these values: compose refuses to read
    the file while any required variable is unset, and the broker keeps guest for `make run`."""
    required = set(REQUIRED.findall((ROOT / "docker-compose.yml").read_text()))
    assert required - set(INFRA_ONLY_ENV) == set()
    assert INFRA_ONLY_ENV["RABBITMQ_ADMIN_USER"] == INFRA_ONLY_ENV["RABBITMQ_ADMIN_PASSWORD"] == "guest"


# --- Kubernetes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["base", "production"])
def test_the_cluster_gets_each_services_user_permissions_and_topic_permissions(overlay: str):
    objects = render(ROOT / "deploy" / overlay)
    users = {o["metadata"]["name"]: o for o in objects if o["kind"] == "User"}
    assert sorted(users) == services()
    for kind in ("Permission", "TopicPermission"):
        granted = {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
        assert sorted(granted) == services(), kind
        for name, obj in granted.items():
            assert obj["spec"]["userReference"] == {"name": name}
            assert obj["spec"]["rabbitmqClusterReference"] == users[name]["spec"]["rabbitmqClusterReference"]
    (cluster,) = [o for o in objects if o["kind"] == "RabbitmqCluster"]
    assert {u["spec"]["rabbitmqClusterReference"]["name"] for u in users.values()} == {cluster["metadata"]["name"]}
    # The permissions name the namespace the services run with.
    for config in (o for o in objects if o["kind"] == "ConfigMap"):
        namespaces = [value for key, value in config["data"].items() if key.endswith("_BUS_NAMESPACE")]
        assert namespaces in ([], [DEFAULT_NAMESPACE]), config["metadata"]["name"]


def test_each_users_secret_holds_the_services_name_and_its_amqp_urls_password():
    secrets = {doc["metadata"]["name"]: doc for doc in load_documents(ROOT / "deploy" / "examples" / "secrets.yaml")}
    for user in (o for o in render(ROOT / "deploy" / "base") if o["kind"] == "User"):
        service = user["metadata"]["name"]
        secret = secrets[user["spec"]["importCredentialsSecret"]["name"]]
        assert secret["type"] == "kubernetes.io/basic-auth"
        credentials = secret["stringData"]
        assert credentials["username"] == broker_user(service)
        runtime = secrets.get(f"{service}-runtime")
        if runtime is not None:
            url = urlsplit(runtime["stringData"]["amqp-url"])
            assert (url.username, url.password) == (credentials["username"], credentials["password"]), service
