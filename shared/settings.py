"""Settings common to every service; each service subclasses with its own env prefix.

Defaults point at loopback so that `make run` works on a developer machine with Postgres and
RabbitMQ installed locally. Every value can be overridden per service (`BASKET_DATABASE_URL`...).
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PG = "127.0.0.1:5432"
DEFAULT_DATABASE = "commerce"

# Development defaults of the two keys: `make run` and the tests work with no configuration.
DEV_ADMIN_JWT_SECRET = "dev-only-change-me-0123456789abcdef"
DEV_IDENTITY_SIGNING_KEY = "dev-only-identity-signing-key-0123456789abcdef"
# Every secret value that appears in this repository (the defaults above, docker compose's
# .env.example, the example Kubernetes Secrets, the docs): anyone can read them, so production
# refuses each one. tests/platform/test_production.py scans the repository and fails when a
# default or example secret is missing here.
KNOWN_DEV_SECRETS = frozenset(
    {
        DEV_ADMIN_JWT_SECRET,
        DEV_IDENTITY_SIGNING_KEY,
        "CHANGE-ME-to-at-least-32-random-bytes",
        "CHANGE-ME-admin-jwt-secret-at-least-32-random-bytes",
        "CHANGE-ME-identity-signing-key-at-least-32-random-bytes",
        "CHANGE-ME-rabbitmq-password",
        # services/gateway/tests/test_auth.py
        "test-secret-for-the-gateway-0123456789-long-enough-for-any-hmac-algorithm",
        "CHANGE-ME",
        "guest",
    }
)
MIN_SECRET_BYTES = 32


def secret_problem(value: str) -> str | None:
    """Why a key is unsafe in production (never echoing it), or None."""
    if not value:
        return "is not set"
    if value in KNOWN_DEV_SECRETS:
        return "is a value published in this repository"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    return None


class ServiceSettings(BaseSettings):
    # populate_by_name: tests build settings with field names (`environment=...`); the environment
    # is read through the aliases.
    model_config = SettingsConfigDict(extra="ignore", frozen=False, populate_by_name=True)

    service: ClassVar[str] = ""
    # The gateway talks HTTP only: its broker settings are unused and not checked.
    uses_broker: ClassVar[bool] = True

    # The one switch (plain `COMMERCE_ENV`, the same for every service): `production` refuses to
    # start with unsafe settings (`production_problems`).
    environment: Literal["development", "production"] = Field("development", validation_alias="COMMERCE_ENV")
    # HMAC-SHA256 key of the identity the gateway passes to the services (shared.http): one value
    # for the gateway and every service, hence one plain variable too. Empty: the development
    # default, in development only.
    identity_signing_key: str = Field("", validation_alias="IDENTITY_SIGNING_KEY", repr=False)

    host: str = "127.0.0.1"
    port: int = 0

    # Runtime DSN: the service's runtime role, data rights on its own schema only.
    database_url: str = ""
    # Migration DSN: a role allowed to create the schema and roles (a superuser locally, the
    # schema owner in production once roles exist).
    migrate_database_url: str = ""
    db_schema: str = ""
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_command_timeout: float = 10.0
    db_acquire_timeout: float = 5.0

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Prefix of every exchange and queue name, so test runs never see each other's messages.
    bus_namespace: str = "commerce"
    bus_prefetch: int = 32
    bus_delivery_limit: int = 10
    bus_retry_delays_ms: tuple[int, ...] = (500, 5_000, 30_000)
    bus_connect_attempts: int = 30
    rpc_timeout: float = 3.0

    outbox_poll_interval: float = 1.0
    outbox_batch_size: int = 100

    log_level: str = "INFO"
    log_json: bool = True
    shutdown_timeout: float = 10.0

    @model_validator(mode="after")
    def _fill_defaults(self) -> ServiceSettings:
        schema = self.db_schema or self.service
        self.db_schema = schema
        if not self.database_url:
            self.database_url = f"postgresql://{schema}_app@{DEFAULT_PG}/{DEFAULT_DATABASE}"
        if not self.migrate_database_url:
            self.migrate_database_url = f"postgresql://postgres@{DEFAULT_PG}/{DEFAULT_DATABASE}"
        if not self.identity_signing_key and self.environment == "development":
            self.identity_signing_key = DEV_IDENTITY_SIGNING_KEY
        return self

    def env_name(self, field: str) -> str:
        """The environment variable a field is read from (named in refusals, never its value)."""
        alias = type(self).model_fields[field].validation_alias
        if isinstance(alias, str):
            return alias
        return f"{self.model_config.get('env_prefix', '')}{field}".upper()

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe for production, one phrase per setting; subclasses
        add their own (the gateway's JWT key, payments' sandbox)."""
        problems = []
        if (why := secret_problem(self.identity_signing_key)) is not None:
            problems.append(f"{self.env_name('identity_signing_key')} {why}")
        if self.uses_broker and urlsplit(self.amqp_url).username in (None, "", "guest"):
            problems.append(f"{self.env_name('amqp_url')} uses the broker's default user guest")
        return problems

    @property
    def runtime_role(self) -> str:
        return f"{self.db_schema}_app"

    @property
    def owner_role(self) -> str:
        return f"{self.db_schema}_owner"


def prefixed(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")
