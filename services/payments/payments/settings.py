from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator

from shared.settings import ServiceSettings, prefixed


class PaymentsSettings(ServiceSettings):
    model_config = prefixed("payments")
    service: ClassVar[str] = "payments"

    port: int = 8004

    # The sandbox processor: its public test nonces capture without money moving, so it is for
    # development only (production refuses to start with it enabled).
    sandbox_enabled: bool = True
    # The provider `GET /payments/provider` describes (a driver name of `providers.DRIVERS`);
    # empty: the sandbox when enabled, else offline.
    default_provider: str = ""
    merchant: str = "commerce"
    client_token_ttl: int = 3600
    # A second, small pool for work that must commit on its own while an event handler's
    # transaction is open (the charge intent, the sandbox processor's records). Separate from the
    # main pool so that handlers holding main connections can never starve it.
    side_pool_max: int = 4

    @model_validator(mode="after")
    def _default_provider(self) -> PaymentsSettings:
        if not self.default_provider:
            self.default_provider = "sandbox" if self.sandbox_enabled else "offline"
        elif self.default_provider == "sandbox" and not self.sandbox_enabled:
            raise ValueError("default_provider is the sandbox, which is disabled")
        return self

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.sandbox_enabled:
            problems.append(f"{self.env_name('sandbox_enabled')} enables the sandbox provider (development only)")
        return problems
