from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from shared.settings import DEV_CUSTOMER_TOKEN_SECRET, ServiceSettings, prefixed, secret_problem

# OWASP's least argon2id cost for passwords (Password Storage Cheat Sheet): 19 MiB, two passes.
MIN_HASH_MEMORY_KIB = 19 * 1024
MIN_HASH_TIME_COST = 2


class CustomersSettings(ServiceSettings):
    model_config = prefixed("customers")
    service: ClassVar[str] = "customers"

    port: int = 8005

    # HS256 key of the customers' access tokens, which the gateway verifies: one value for both,
    # hence one plain variable. Empty: the development default, in development only (production
    # refuses to start without a real key).
    customer_token_secret: str = Field("", validation_alias="CUSTOMER_TOKEN_SECRET", repr=False)
    # Seconds an access token is good for: it cannot be revoked, so it is short.
    access_token_ttl: int = 15 * 60
    # Seconds a refresh token is good for; each use replaces it with a new one.
    refresh_token_ttl: int = 30 * 24 * 3600
    # A rotated refresh token presented again within this many seconds is a retry (an answer lost
    # on the way, two tabs refreshing at once) and gets a new pair; later, it is a stolen copy in
    # use, and the whole session ends.
    refresh_reuse_grace: float = 10.0
    # argon2id's cost: by default RFC 9106's second recommended option (64 MiB, three passes,
    # about 0.1 s of CPU). Raise it on strong hardware; production refuses less than OWASP's
    # minimum (19 MiB, two passes). A hash made with other values is redone at the next sign-in.
    password_hash_memory_kib: int = 64 * 1024
    password_hash_time_cost: int = 3
    # Password hashes computed at once; more wait (each takes its memory while it runs).
    password_hash_concurrency: int = 4
    # How often expired tokens, ended sessions and forgotten sign-in failures are deleted (seconds).
    purge_interval: float = 600.0

    @model_validator(mode="after")
    def _dev_token_secret(self) -> CustomersSettings:
        if not self.customer_token_secret and self.environment == "development":
            self.customer_token_secret = DEV_CUSTOMER_TOKEN_SECRET
        return self

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if (why := secret_problem(self.customer_token_secret)) is not None:
            problems.append(f"{self.env_name('customer_token_secret')} {why}")
        if self.password_hash_memory_kib < MIN_HASH_MEMORY_KIB:
            problems.append(f"{self.env_name('password_hash_memory_kib')} is below {MIN_HASH_MEMORY_KIB}")
        if self.password_hash_time_cost < MIN_HASH_TIME_COST:
            problems.append(f"{self.env_name('password_hash_time_cost')} is below {MIN_HASH_TIME_COST}")
        return problems
