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

    def upstream(self, service: str) -> str:
        return getattr(self, f"{service}_url").rstrip("/")
