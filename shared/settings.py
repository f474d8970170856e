"""Settings common to every service; each service subclasses with its own env prefix.

Defaults point at loopback so that `make run` works on a developer machine with Postgres and
RabbitMQ installed locally. Every value can be overridden per service (`BASKET_DATABASE_URL`...).
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PG = "127.0.0.1:5432"
DEFAULT_DATABASE = "commerce"

# Development defaults of the two keys: `make run` and the tests work with no configuration.
DEV_ADMIN_JWT_SECRET = "dev-only-change-me-0123456789abcdef"
DEV_IDENTITY_SIGNING_KEY = "dev-only-identity-signing-key-0123456789abcdef"
# The customers' access tokens (issued by customers, verified by the gateway).
DEV_CUSTOMER_TOKEN_SECRET = "dev-only-customer-token-secret-0123456789abcdef"
# Every secret value that appears in this repository (the defaults above, docker compose's
# .env.example, the example Kubernetes Secrets, the docs): anyone can read them, so production
# refuses each one. tests/platform/test_production.py scans the repository and fails when a
# default or example secret is missing here.
KNOWN_DEV_SECRETS = frozenset(
    {
        DEV_ADMIN_JWT_SECRET,
        DEV_IDENTITY_SIGNING_KEY,
        DEV_CUSTOMER_TOKEN_SECRET,
        "CHANGE-ME-to-at-least-32-random-bytes",
        "CHANGE-ME-admin-jwt-secret-at-least-32-random-bytes",
        "CHANGE-ME-identity-signing-key-at-least-32-random-bytes",
        "CHANGE-ME-customer-token-secret-at-least-32-random-bytes",
        "CHANGE-ME-rabbitmq-password",
        # services/customers/customers/seed.py: the demo customer's password
        "demo-lovelace-1815",
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


def dsn_problem(dsn: str) -> str | None:
    """Why a connection URL (Postgres, AMQP) is unsafe in production (never echoing it), or None:
    its password is a value published in this repository (the example Secrets'). One without a
    password (peer, certificate or trust authentication) is the platform's to judge."""
    password = urlsplit(dsn).password
    if password is not None and unquote(password) in KNOWN_DEV_SECRETS:
        return "has a password published in this repository"
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
    # Longest wait for a request's whole body in a domain service (408 past it). The gateway
    # bounds a client's body by the route's timeout and sends it on whole, so this is generous.
    body_timeout: float = Field(10.0, gt=0)

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
    # Each service connects as its own broker user, `<prefix><service>` (`broker_user`), and its
    # consumers accept a message only from the user of the service the contract registry names
    # (docs/deploy.md, "Broker users and permissions"). The same value for every service.
    bus_user_prefix: str = ""
    # Messages the event consumer (and, apart, the request/reply server) holds unacknowledged.
    # Each handler needs a pooled connection, so it is never more than `db_pool_max` (the
    # default): the messages past the pool would only wait in this process for a connection, time
    # out (`db_acquire_timeout`) and go round the retry queues, while another replica with free
    # connections could have taken them. A larger value is refused, not lowered in silence: it
    # says the two settings were sized apart.
    bus_prefetch: int | None = Field(None, ge=1)
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
        if self.bus_prefetch is None:
            self.bus_prefetch = self.db_pool_max
        elif self.bus_prefetch > self.db_pool_max:
            raise ValueError(
                f"{self.env_name('bus_prefetch')} ({self.bus_prefetch}) must not be larger than "
                f"{self.env_name('db_pool_max')} ({self.db_pool_max}): each message in hand needs a "
                "database connection; leave it unset to take the pool's size"
            )
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
        if self.uses_broker:
            problems += self._broker_problems()
        if (why := dsn_problem(self.database_url)) is not None:
            problems.append(f"{self.env_name('database_url')} {why}")
        return problems

    def _broker_problems(self) -> list[str]:
        name = self.env_name("amqp_url")
        user = urlsplit(self.amqp_url).username
        if user in (None, "", "guest"):
            return [f"{name} uses the broker's default user guest"]
        problems = []
        own = broker_user(self.service, self.bus_user_prefix)
        if unquote(user) != own:
            # The other services would park every event it publishes.
            problems.append(f"{name} must connect as the service's own broker user {own}")
        if (why := dsn_problem(self.amqp_url)) is not None:
            problems.append(f"{name} {why}")
        return problems

    def migration_problems(self) -> list[str]:
        """What makes `migrate` unsafe for production. It uses the migration DSN alone (it is given
        neither the keys nor a broker user), so that is all there is to check."""
        why = dsn_problem(self.migrate_database_url)
        return [] if why is None else [f"{self.env_name('migrate_database_url')} {why}"]

    @property
    def runtime_role(self) -> str:
        return f"{self.db_schema}_app"

    @property
    def owner_role(self) -> str:
        return f"{self.db_schema}_owner"


def broker_user(service: str, prefix: str = "") -> str:
    """The broker user a service connects as: by convention its own name (behind the deployment's
    `bus_user_prefix`). Consumers accept a message from the user of the service the registry names."""
    return f"{prefix}{service}"


def prefixed(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")
