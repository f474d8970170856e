"""COMMERCE_ENV=production: every service refuses to start with an unsafe setting (issue 17).

Each service runs as `python -m <service>`, as docker compose and Kubernetes run it, with a safe
production configuration and one unsafe setting: it exits non-zero before opening anything, with
one log line that names the setting and never shows its value.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest

from shared.settings import DEV_ADMIN_JWT_SECRET, DEV_CUSTOMER_TOKEN_SECRET, DEV_IDENTITY_SIGNING_KEY, KNOWN_DEV_SECRETS
from tests.deploy.common import ROOT, SERVICES, settings_class

GOOD_KEY = secrets.token_urlsafe(48)
GOOD_JWT_KEY = secrets.token_urlsafe(48)
GOOD_CUSTOMER_KEY = secrets.token_urlsafe(48)
GOOD_AMQP_PASSWORD = secrets.token_urlsafe(16)


def production_env(service: str) -> dict[str, str]:
    """A configuration production accepts (every key real, no guest, no sandbox)."""
    prefix = service.upper() + "_"
    env = {"COMMERCE_ENV": "production", "IDENTITY_SIGNING_KEY": GOOD_KEY, f"{prefix}LOG_JSON": "true"}
    if service == "gateway":
        env |= {
            "GATEWAY_ADMIN_JWT_SECRET": GOOD_JWT_KEY,
            "GATEWAY_ADMIN_JWT_ISSUER": "https://id.example.com",
            "GATEWAY_ADMIN_JWT_AUDIENCE": "commerce-admin",
        }
    else:
        # Its own broker user (docs/deploy.md). Nothing listens there: a service that passed the
        # check would fail to connect, not hang.
        env[f"{prefix}AMQP_URL"] = f"amqp://{service}:{GOOD_AMQP_PASSWORD}@127.0.0.1:1/"
    if service in ("gateway", "customers"):
        env["CUSTOMER_TOKEN_SECRET"] = GOOD_CUSTOMER_KEY
    if service == "payments":
        env["PAYMENTS_SANDBOX_ENABLED"] = "false"
    return env


def base_environment() -> dict[str, str]:
    """This process's environment without any setting of ours (the run's own must not leak in)."""
    ours = re.compile(r"^(COMMERCE_|IDENTITY_|GATEWAY_|BASKET_|ORDERS_|SHIPPING_|PAYMENTS_|CUSTOMERS?_)")
    return {k: v for k, v in os.environ.items() if not ours.match(k)}


# (service, variable, unsafe value or None to unset, the name the log line must give)
UNSAFE = [
    *((s, "IDENTITY_SIGNING_KEY", None, "IDENTITY_SIGNING_KEY") for s in SERVICES),
    *((s, "IDENTITY_SIGNING_KEY", DEV_IDENTITY_SIGNING_KEY, "IDENTITY_SIGNING_KEY") for s in SERVICES),
    *((s, "IDENTITY_SIGNING_KEY", "short-but-secret-42", "IDENTITY_SIGNING_KEY") for s in SERVICES),
    *((s, f"{s.upper()}_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/", f"{s.upper()}_AMQP_URL") for s in SERVICES[1:]),
    *((s, f"{s.upper()}_AMQP_URL", None, f"{s.upper()}_AMQP_URL") for s in SERVICES[1:]),
    ("gateway", "GATEWAY_ADMIN_JWT_SECRET", None, "GATEWAY_ADMIN_JWT_SECRET"),
    ("gateway", "GATEWAY_ADMIN_JWT_SECRET", DEV_ADMIN_JWT_SECRET, "GATEWAY_ADMIN_JWT_SECRET"),
    ("gateway", "GATEWAY_ADMIN_JWT_SECRET", "CHANGE-ME-to-at-least-32-random-bytes", "GATEWAY_ADMIN_JWT_SECRET"),
    ("gateway", "GATEWAY_ADMIN_JWT_SECRET", "0123456789abcdef0123456789abcde", "GATEWAY_ADMIN_JWT_SECRET"),
    ("gateway", "GATEWAY_ADMIN_JWT_ISSUER", None, "GATEWAY_ADMIN_JWT_ISSUER"),
    ("gateway", "GATEWAY_ADMIN_JWT_AUDIENCE", None, "GATEWAY_ADMIN_JWT_AUDIENCE"),
    ("payments", "PAYMENTS_SANDBOX_ENABLED", "true", "PAYMENTS_SANDBOX_ENABLED"),
    ("payments", "PAYMENTS_SANDBOX_ENABLED", None, "PAYMENTS_SANDBOX_ENABLED"),
    # The customers' access token key: the service that signs with it and the gateway that checks it.
    *((s, "CUSTOMER_TOKEN_SECRET", None, "CUSTOMER_TOKEN_SECRET") for s in ("gateway", "customers")),
    *(
        (s, "CUSTOMER_TOKEN_SECRET", DEV_CUSTOMER_TOKEN_SECRET, "CUSTOMER_TOKEN_SECRET")
        for s in ("gateway", "customers")
    ),
    *((s, "CUSTOMER_TOKEN_SECRET", "short-but-secret-42", "CUSTOMER_TOKEN_SECRET") for s in ("gateway", "customers")),
    ("gateway", "CUSTOMER_TOKEN_SECRET", GOOD_JWT_KEY, "CUSTOMER_TOKEN_SECRET"),  # the admin key: one per kind
    ("customers", "CUSTOMERS_PASSWORD_HASH_MEMORY_KIB", "1024", "CUSTOMERS_PASSWORD_HASH_MEMORY_KIB"),
    ("customers", "CUSTOMERS_PASSWORD_HASH_TIME_COST", "1", "CUSTOMERS_PASSWORD_HASH_TIME_COST"),
]


@pytest.mark.parametrize(("service", "variable", "value", "named"), UNSAFE, ids=lambda v: str(v)[:24])
def test_a_service_refuses_to_start_with_an_unsafe_setting(service, variable, value, named) -> None:
    env = base_environment() | production_env(service)
    if value is None:
        env.pop(variable, None)
    else:
        env[variable] = value
    done = subprocess.run(
        [sys.executable, "-m", service], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert named in lines[0] and "refusing to start in production" in lines[0]
    # No secret's value is ever shown: the unsafe one, nor the good ones around it.
    for secret in (value, GOOD_KEY, GOOD_JWT_KEY, GOOD_CUSTOMER_KEY, GOOD_AMQP_PASSWORD):
        if secret and secret not in ("true", "false", "1", "1024"):
            assert secret not in output


@pytest.mark.parametrize("service", SERVICES)
def test_the_safe_production_configuration_passes_the_check(service, monkeypatch) -> None:
    for name in list(os.environ):
        if name not in base_environment():
            monkeypatch.delenv(name)
    for name, value in production_env(service).items():
        monkeypatch.setenv(name, value)
    settings = settings_class(service)()
    assert settings.environment == "production"
    assert settings.production_problems() == []


@pytest.mark.parametrize("known", sorted(KNOWN_DEV_SECRETS))
def test_every_known_secret_is_refused_as_a_key(known, monkeypatch) -> None:
    for name, value in production_env("gateway").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IDENTITY_SIGNING_KEY", known)
    monkeypatch.setenv("GATEWAY_ADMIN_JWT_SECRET", known)
    monkeypatch.setenv("CUSTOMER_TOKEN_SECRET", known)
    problems = settings_class("gateway")().production_problems()
    assert any(p.startswith("IDENTITY_SIGNING_KEY ") for p in problems)
    assert any(p.startswith("GATEWAY_ADMIN_JWT_SECRET ") for p in problems)
    assert any(p.startswith("CUSTOMER_TOKEN_SECRET ") for p in problems)


def test_development_needs_no_configuration(monkeypatch) -> None:
    """`make run` and the tests: no variable set, the development keys, nothing refused."""
    for name in list(os.environ):
        if name not in base_environment():
            monkeypatch.delenv(name)
    for service in SERVICES:
        settings = settings_class(service)()
        assert settings.environment == "development"
        assert settings.identity_signing_key == DEV_IDENTITY_SIGNING_KEY


# --- every secret the repository holds is known ---------------------------------------------------

# Where the repository writes secrets down: quoted values of *SECRET* / *SIGNING_KEY* / *PASSWORD*
# names (the settings' development keys, the tests' own keys), compose's example .env and
# `${VAR:-default}` fallbacks, the example Kubernetes Secrets, passwords in example DSNs.
SECRET_NAME = r"[A-Za-z_]*(?:SECRET|SIGNING_KEY|PASSWORD|PASS)[A-Za-z_]*"
QUOTED = re.compile(rf"""(?i)\b{SECRET_NAME}\b\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""")
ENV_LINE = re.compile(rf"(?im)^{SECRET_NAME}=(\S+)$")
FALLBACK = re.compile(rf"(?i)\$\{{{SECRET_NAME}:-([^}}]+)\}}")
YAML_SECRET = re.compile(r"(?m)^\s+(?:admin-jwt-secret|identity-signing-key|customer-token-secret|password):\s*(\S+)")
DSN_PASSWORD = re.compile(r"\w+://[^:/@\s]+:([^@\s$<{]+)@")


def repository_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in listed if name.endswith((".py", ".yml", ".yaml", ".md", ".example", ".toml"))]


def test_every_secret_written_in_the_repository_is_refused() -> None:
    found: dict[str, str] = {}
    for name in repository_files():
        path = ROOT / name
        if path.is_file():
            text = path.read_text(errors="replace")
            # `password: Password` in Python is a field's annotation, not a YAML value.
            yaml = () if name.endswith(".py") else (YAML_SECRET,)
            for pattern in (QUOTED, ENV_LINE, FALLBACK, DSN_PASSWORD, *yaml):
                found |= dict.fromkeys(pattern.findall(text), name)
    # The scan sees what it must: the development keys, the examples for compose and Kubernetes.
    for value in (
        DEV_ADMIN_JWT_SECRET,
        DEV_IDENTITY_SIGNING_KEY,
        "CHANGE-ME-identity-signing-key-at-least-32-random-bytes",
    ):
        assert value in found, value
    assert "CHANGE-ME-to-at-least-32-random-bytes" in found and "CHANGE-ME-rabbitmq-password" in found
    unknown = {value: where for value, where in found.items() if value not in KNOWN_DEV_SECRETS}
    assert unknown == {}
