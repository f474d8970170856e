from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from shared.settings import ServiceSettings, prefixed

# How long a call to a payment provider may take before it counts as unavailable (retried later,
# with the same idempotency key, so a charge that did go through is answered, not repeated).
DEFAULT_PROVIDER_TIMEOUT = 10.0


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
    # Each call to a provider (charge, lookup, void), as its client's timeout.
    provider_timeout: float = Field(DEFAULT_PROVIDER_TIMEOUT, gt=0)
    # An attempt whose intent was recorded this long ago with no result (the process died, or the
    # provider stayed away while its charge request was retried) is settled by asking the provider
    # for the charge made with its key: captured is recorded as captured, not found as declined.
    # Far longer than a provider call may take, so no call of that attempt is still on its way.
    reconcile_after: float = Field(120.0, gt=0)
    reconcile_interval: float = Field(15.0, gt=0)

    @model_validator(mode="after")
    def _default_provider(self) -> PaymentsSettings:
        if not self.default_provider:
            self.default_provider = "sandbox" if self.sandbox_enabled else "offline"
        elif self.default_provider == "sandbox" and not self.sandbox_enabled:
            raise ValueError("default_provider is the sandbox, which is disabled")
        return self

    @model_validator(mode="after")
    def _reconcile_after_calls_ended(self) -> PaymentsSettings:
        if self.reconcile_after <= 2 * self.provider_timeout:
            raise ValueError("reconcile_after must be more than twice provider_timeout")
        return self

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.sandbox_enabled:
            problems.append(f"{self.env_name('sandbox_enabled')} enables the sandbox provider (development only)")
        return problems
