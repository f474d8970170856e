"""Payment providers behind one interface: a real processor (Braintree, Stripe, Opayo) is one new
class registered in `DRIVERS`.

Tokens (nonces) are secrets: they are passed through to the provider and never logged, stored or
put into an exception message.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp import web

from payments.settings import PaymentsSettings
from shared import db, runtime

# The sandbox's well-known test nonces (Braintree's names, so frontends' test setups work).
VALID_NONCE = "fake-valid-nonce"
DECLINED_NONCE = "fake-processor-declined-visa-nonce"
CONSUMED_NONCE = "fake-consumed-nonce"

TOKEN_REQUIRED = "The payment token field is required."
TOKEN_CONSUMED = "Cannot use a payment_method_nonce more than once."


class ProviderError(Exception):
    """A provider failure that is not an answer (network, outage): retry later."""


class InvalidToken(Exception):
    """The token can never be charged (missing, consumed, malformed): a validation error."""


@dataclass(frozen=True)
class ClientToken:
    value: str
    expires_at: datetime | None


@dataclass(frozen=True)
class ChargeResult:
    success: bool
    reference: str
    status: str  # captured | declined
    message: str | None = None
    card_type: str | None = None
    last_four: str | None = None


@dataclass(frozen=True)
class RefundResult:
    success: bool
    reference: str
    message: str | None = None


@dataclass(frozen=True)
class VoidResult:
    success: bool
    message: str | None = None


class Provider(abc.ABC):
    """What checkout, refunds and voids need from a processor.

    `charge` must honour `idempotency_key`: the same key returns the first result and never
    captures a second time, whatever the other arguments are (as Stripe and Braintree do).
    """

    name: str
    driver: str

    def __init__(self, merchant: str) -> None:
        self.merchant = merchant

    @abc.abstractmethod
    async def client_token(self) -> ClientToken: ...

    @abc.abstractmethod
    async def validate_token(self, token: str | None) -> str | None:
        """None when the token may be charged; otherwise the message for the client."""

    @abc.abstractmethod
    async def charge(self, amount: int, currency: str, token: str | None, idempotency_key: str) -> ChargeResult:
        """Raises InvalidToken for a token that can never be charged, ProviderError when unreachable."""

    @abc.abstractmethod
    async def refund(self, reference: str, amount: int, idempotency_key: str) -> RefundResult: ...

    @abc.abstractmethod
    async def void(self, reference: str) -> VoidResult: ...


class OfflineProvider(Provider):
    """Pay by invoice, bank transfer...: nothing to charge, always succeeds."""

    name = "Offline"
    driver = "offline"

    async def client_token(self) -> ClientToken:
        return ClientToken("OFFLINE", None)

    async def validate_token(self, token: str | None) -> str | None:
        return None

    async def charge(self, amount: int, currency: str, token: str | None, idempotency_key: str) -> ChargeResult:
        # No side effect anywhere: a reference derived from the key makes a repeat return the same.
        return ChargeResult(True, f"offline-{idempotency_key}", "captured")

    async def refund(self, reference: str, amount: int, idempotency_key: str) -> RefundResult:
        return RefundResult(True, f"offline-refund-{idempotency_key}")

    async def void(self, reference: str) -> VoidResult:
        return VoidResult(True)


class SandboxProvider(Provider):
    """A card processor for development and tests, with its own processor-side records.

    The records are written through their own pool and committed at once, as a remote processor
    would: whatever the caller's transaction does afterwards, the charge has happened.
    """

    name = "Sandbox"
    driver = "sandbox"

    def __init__(self, merchant: str, pool: asyncpg.Pool, token_ttl: int = 3600) -> None:
        super().__init__(merchant)
        self.pool = pool
        self.token_ttl = token_ttl

    async def client_token(self) -> ClientToken:
        return ClientToken(
            f"sandbox-{secrets.token_urlsafe(24)}", datetime.now(UTC) + timedelta(seconds=self.token_ttl)
        )

    async def validate_token(self, token: str | None) -> str | None:
        if not token:
            return TOKEN_REQUIRED
        if token == CONSUMED_NONCE:
            return TOKEN_CONSUMED
        return None

    async def charge(self, amount: int, currency: str, token: str | None, idempotency_key: str) -> ChargeResult:
        try:
            async with self.pool.acquire() as conn:
                error = await self.validate_token(token)
                if error is not None:
                    # Unchargeable now, but a key already used keeps its first result.
                    row = await conn.fetchrow(_SELECT_CHARGE, idempotency_key)
                    if row is not None:
                        return _charge_result(row)
                    raise InvalidToken(error)
                if token == VALID_NONCE:
                    outcome = (True, "captured", None, "Visa", "1881")
                elif token == DECLINED_NONCE:
                    outcome = (False, "declined", "Processor declined: Do Not Honor", "Visa", "0002")
                else:
                    outcome = (False, "declined", "Processor declined: unknown payment method", None, None)
                success, status, message, card_type, last_four = outcome
                # A key already used keeps its first result: the insert does nothing, we read that.
                row = await conn.fetchrow(
                    """
                    INSERT INTO sandbox_charges
                        (idempotency_key, reference, amount, currency, success, status, message, card_type, last_four)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING reference, success, status, message, card_type, last_four
                    """,
                    idempotency_key,
                    f"sbx_{secrets.token_hex(8)}",
                    amount,
                    currency,
                    success,
                    status,
                    message,
                    card_type,
                    last_four,
                )
                if row is None:
                    row = await conn.fetchrow(_SELECT_CHARGE, idempotency_key)
                return _charge_result(row)
        except (OSError, asyncpg.PostgresConnectionError, TimeoutError) as exc:
            raise ProviderError(f"sandbox unreachable: {type(exc).__name__}") from exc

    async def refund(self, reference: str, amount: int, idempotency_key: str) -> RefundResult:
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchrow(
                "SELECT reference FROM sandbox_refunds WHERE idempotency_key = $1", idempotency_key
            )
            if done is not None:
                return RefundResult(True, done["reference"])
            charge = await conn.fetchrow(
                "SELECT amount, success, refunded, voided FROM sandbox_charges WHERE reference = $1 FOR UPDATE",
                reference,
            )
            if charge is None or not charge["success"]:
                return RefundResult(False, "", "No settled charge with this reference")
            if charge["voided"]:
                return RefundResult(False, "", "The charge was voided")
            if charge["refunded"] + amount > charge["amount"]:
                return RefundResult(False, "", "Amount exceeds remaining balance")
            refund_reference = f"sbx_rf_{secrets.token_hex(8)}"
            await conn.execute(
                "INSERT INTO sandbox_refunds (idempotency_key, reference, charge_reference, amount) "
                "VALUES ($1, $2, $3, $4)",
                idempotency_key,
                refund_reference,
                reference,
                amount,
            )
            await conn.execute(
                "UPDATE sandbox_charges SET refunded = refunded + $2 WHERE reference = $1", reference, amount
            )
            return RefundResult(True, refund_reference)

    async def void(self, reference: str) -> VoidResult:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "UPDATE sandbox_charges SET voided = true "
                "WHERE reference = $1 AND success AND refunded = 0 RETURNING reference",
                reference,
            )
            if row is not None:
                return VoidResult(True)
            return VoidResult(False, "Only an unrefunded charge can be voided")


_SELECT_CHARGE = (
    "SELECT reference, success, status, message, card_type, last_four FROM sandbox_charges WHERE idempotency_key = $1"
)


def _charge_result(row: asyncpg.Record) -> ChargeResult:
    return ChargeResult(
        success=row["success"],
        reference=row["reference"],
        status=row["status"],
        message=row["message"],
        card_type=row["card_type"],
        last_four=row["last_four"],
    )


# driver -> how to build it from (merchant, side pool, client token ttl)
DRIVERS = {
    "offline": lambda merchant, pool, ttl: OfflineProvider(merchant),
    "sandbox": lambda merchant, pool, ttl: SandboxProvider(merchant, pool, ttl),
}


def build_providers(merchant: str, pool: asyncpg.Pool, token_ttl: int, *, sandbox: bool = True) -> dict[str, Provider]:
    """The enabled providers: the sandbox only when `sandbox` (development)."""
    return {
        driver: factory(merchant, pool, token_ttl)
        for driver, factory in DRIVERS.items()
        if sandbox or driver != "sandbox"
    }


SIDE_POOL = web.AppKey("side_pool", asyncpg.Pool)
PROVIDERS = web.AppKey("providers", dict[str, Provider])


def side_resources(settings: PaymentsSettings) -> runtime.CleanupCtx:
    """The app's providers and the small pool of their own that they (and the charge intents)
    write through: what is written there commits on its own, whatever a unit of work open at the
    time does, as a remote processor's records would."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        side_settings = settings.model_copy(update={"db_pool_min": 1, "db_pool_max": settings.side_pool_max})
        app[SIDE_POOL] = await db.create_pool(side_settings)
        app[PROVIDERS] = build_providers(
            settings.merchant, app[SIDE_POOL], settings.client_token_ttl, sandbox=settings.sandbox_enabled
        )
        yield
        await app[SIDE_POOL].close()

    return ctx
