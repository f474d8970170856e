from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from shared.settings import (
    DEV_ADMIN_JWT_SECRET,
    DEV_CUSTOMER_TOKEN_SECRET,
    ServiceSettings,
    prefixed,
    secret_problem,
)

UPSTREAM_SERVICES = ("basket", "orders", "shipping", "payments", "customers")


class GatewaySettings(ServiceSettings):
    model_config = prefixed("gateway")
    service: ClassVar[str] = "gateway"
    uses_broker: ClassVar[bool] = False

    # Loopback, like every service: a development gateway (public dev keys) must not face a
    # network. The image sets 0.0.0.0 (Dockerfile); compose publishes it on 127.0.0.1.
    host: str = "127.0.0.1"
    port: int = 8000

    # One base URL per instance, comma-separated (`http://10.0.0.5:8001,http://10.0.0.6:8001`), or a
    # single URL (a Kubernetes Service that balances itself). Several: round-robin over the instances
    # not marked down, failing over to the next one when a connection cannot be made.
    basket_url: str = "http://127.0.0.1:8001"
    orders_url: str = "http://127.0.0.1:8002"
    shipping_url: str = "http://127.0.0.1:8003"
    payments_url: str = "http://127.0.0.1:8004"
    customers_url: str = "http://127.0.0.1:8005"
    # An instance that refused a connection (or did not accept one within the connect timeout) is
    # skipped for this many seconds, then tried again; it is still tried when every instance is down.
    upstream_down_for: float = 2.0
    upstream_connect_timeout: float = 2.0
    # Requests in flight to one service (all its instances together), and how long a request
    # waits for a slot when they are all taken before the 503 (`Retry-After: 1`). Each service
    # has its own: one that slows down holds at most this many of the `upstream_connections`,
    # and the other services keep the rest.
    upstream_max_in_flight: int = Field(50, ge=1)
    upstream_admission_wait: float = Field(0.1, ge=0)

    max_body_bytes: int = 256 * 1024
    default_timeout: float = 5.0
    upstream_connections: int = 200

    # Admin routes: HS256 JWTs signed with this key, carrying the role claim `admin`. Empty: the
    # development default, in development only (production refuses to start without a real key).
    admin_jwt_secret: str = Field("", repr=False)
    # Required in production (settings and tokens), checked whenever set.
    admin_jwt_issuer: str | None = None
    admin_jwt_audience: str | None = None
    # Longest accepted `exp - iat` (seconds), in every mode: a leaked token dies soon.
    admin_jwt_max_lifetime: int = 3600
    # Clock skew allowed on `iat` (not in the future) and `exp`.
    admin_jwt_leeway: int = 5

    # A signed-in customer's operations: the access tokens the customers service issues, HS256 with
    # this key (one value for both, hence one plain variable). Empty: the development default, in
    # development only. Longest accepted `exp - iat` (seconds): the service issues shorter ones.
    customer_token_secret: str = Field("", validation_alias="CUSTOMER_TOKEN_SECRET", repr=False)
    customer_token_max_lifetime: int = 3600

    # CORS: exact origins (scheme://host[:port]) allowed to call the API from a browser; "*" allows any
    # origin (no credentials are involved: admin auth is a bearer header, never a cookie).
    # Env: GATEWAY_CORS_ORIGINS='["https://shop.example.com"]'.
    cors_origins: list[str] = ["http://localhost:3000", "http://127.0.0.1:3000"]
    cors_max_age: int = 600

    # Per-client token bucket: `rate_limit_rate` requests per second sustained, bursts up to
    # `rate_limit_burst`. A rate of 0 turns the limit off. Health endpoints are never limited.
    rate_limit_rate: float = 200.0
    rate_limit_burst: int = 400
    # Peers (IPs or CIDRs) whose X-Forwarded-For is believed: a load balancer in front of the gateway.
    trusted_proxies: list[str] = []

    @model_validator(mode="after")
    def _dev_jwt_secret(self) -> GatewaySettings:
        if not self.admin_jwt_secret and self.environment == "development":
            self.admin_jwt_secret = DEV_ADMIN_JWT_SECRET
        if not self.customer_token_secret and self.environment == "development":
            self.customer_token_secret = DEV_CUSTOMER_TOKEN_SECRET
        return self

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if (why := secret_problem(self.admin_jwt_secret)) is not None:
            problems.append(f"{self.env_name('admin_jwt_secret')} {why}")
        if (why := secret_problem(self.customer_token_secret)) is not None:
            problems.append(f"{self.env_name('customer_token_secret')} {why}")
        elif self.customer_token_secret == self.admin_jwt_secret:
            # One key per kind of token: a token of one kind must never verify as the other.
            problems.append(f"{self.env_name('customer_token_secret')} is the admin JWT key")
        for name in ("admin_jwt_issuer", "admin_jwt_audience"):
            if not getattr(self, name):
                problems.append(f"{self.env_name(name)} is not set")
        return problems

    @field_validator(*(f"{name}_url" for name in UPSTREAM_SERVICES))
    @classmethod
    def _instances(cls, value: str) -> str:
        urls = [url.strip().rstrip("/") for url in value.split(",")]
        if not urls or any(not url.startswith(("http://", "https://")) for url in urls):
            raise ValueError("expected comma-separated http(s) base URLs")
        return ",".join(urls)

    def upstreams(self, service: str) -> tuple[str, ...]:
        """The base URLs of a service's instances, without a trailing slash."""
        return tuple(getattr(self, f"{service}_url").split(","))
