from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class GatewaySettings(ServiceSettings):
    model_config = prefixed("gateway")
    service: ClassVar[str] = "gateway"

    host: str = "0.0.0.0"
    port: int = 8000

    basket_url: str = "http://127.0.0.1:8001"
    orders_url: str = "http://127.0.0.1:8002"
    shipping_url: str = "http://127.0.0.1:8003"
    payments_url: str = "http://127.0.0.1:8004"

    max_body_bytes: int = 256 * 1024
    default_timeout: float = 5.0
    upstream_connections: int = 200

    # Admin routes: HS256 JWTs signed with this key, carrying the role claim `admin`.
    admin_jwt_secret: str = "dev-only-change-me-0123456789abcdef"
    admin_jwt_issuer: str | None = None
    admin_jwt_audience: str | None = None

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

    def upstream(self, service: str) -> str:
        return getattr(self, f"{service}_url").rstrip("/")
