"""Settings common to every service; each service subclasses with its own env prefix.

Defaults point at loopback so that `make run` works on a developer machine with Postgres and
RabbitMQ installed locally. Every value can be overridden per service (`BASKET_DATABASE_URL`...).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PG = "127.0.0.1:5432"
DEFAULT_DATABASE = "commerce"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=False)

    service: ClassVar[str] = ""

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
        return self

    @property
    def runtime_role(self) -> str:
        return f"{self.db_schema}_app"

    @property
    def owner_role(self) -> str:
        return f"{self.db_schema}_owner"


def prefixed(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")
