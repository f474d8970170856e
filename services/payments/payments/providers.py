"""Payment providers behind one interface: a real processor (Braintree, Stripe, Opayo) is one new
class registered in `DRIVERS`.

Tokens (nonces) are secrets: they are passed through to the provider and never logged, stored or
put into an exception message.

The sandbox's test nonces (Braintree's names, so frontends' test setups work):
`fake-valid-nonce` captures; `fake-processor-declined-visa-nonce` is declined;
`fake-consumed-nonce` is invalid (used already); `fake-valid-wrong-amount-nonce` captures one
minor unit more than asked, as a faulty processor or integration would (the charger voids it);
anything else is declined. An outage of the sandbox is a row in its `sandbox_outages` table
(see the migration that creates it): its next charges, or lookups, fail with a timeout or a 503.
"""

from __future__ import annotations

import abc
import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TypeVar

import asyncpg
from aiohttp import web

from payments.settings import DEFAULT_PROVIDER_TIMEOUT, PaymentsSettings
from shared import db, runtime
from shared.errors import Unavailable

VALID_NONCE = "fake-valid-nonce"
DECLINED_NONCE = "fake-processor-declined-visa-nonce"
CONSUMED_NONCE = "fake-consumed-nonce"
WRONG_AMOUNT_NONCE = "fake-valid-wrong-amount-nonce"

TOKEN_REQUIRED = "The payment token field is required."
TOKEN_CONSUMED = "Cannot use a payment_method_nonce more than once."


class ProviderError(Unavailable):
    """A provider failure that is not an answer (network, timeout, 5xx): retry later, with the
    same idempotency key, for as long as it lasts (an event is never parked for it)."""


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
    # What the provider reports for the charge (for a capture: what it captured), stated by every
    # result so that no provider can leave it out by accident; None when it reports nothing.
    amount: int | None
    currency: str | None
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
    captures a second time, whatever the other arguments are (as Stripe and Braintree do), and
    `lookup` finds that result by the key alone. A failure that is not an answer raises
    `ProviderError`; callers bound every call by `timeout` (`answer`).
    """

    name: str
    driver: str
    # False for a provider through which no money moves (offline): it captures nothing, so there
    # is no captured amount to check against the order's.
    moves_money: ClassVar[bool] = True

    def __init__(self, merchant: str, timeout: float = DEFAULT_PROVIDER_TIMEOUT) -> None:
        self.merchant = merchant
        self.timeout = timeout

    @abc.abstractmethod
    async def client_token(self) -> ClientToken: ...

    @abc.abstractmethod
    async def validate_token(self, token: str | None) -> str | None:
        """None when the token may be charged; otherwise the message for the client."""

    @abc.abstractmethod
    async def charge(self, amount: int, currency: str, token: str | None, idempotency_key: str) -> ChargeResult:
        """Raises InvalidToken for a token that can never be charged, ProviderError when unreachable."""

    @abc.abstractmethod
    async def lookup(self, idempotency_key: str) -> ChargeResult | None:
        """The result of the charge made with this key; None when the provider has none (it never
        got the request). Raises ProviderError when unreachable."""

    @abc.abstractmethod
    async def refund(self, reference: str, amount: int, idempotency_key: str) -> RefundResult: ...

    @abc.abstractmethod
    async def void(self, reference: str) -> VoidResult: ...


class OfflineProvider(Provider):
    """Pay by invoice, bank transfer...: nothing to charge, always succeeds."""

    name = "Offline"
    driver = "offline"
    moves_money = False

    async def client_token(self) -> ClientToken:
        return ClientToken("OFFLINE", None)

    async def validate_token(self, token: str | None) -> str | None:
        return None

    async def charge(self, amount: int, currency: str, token: str | None, idempotency_key: str) -> ChargeResult:
        # No side effect anywhere: a reference derived from the key makes a repeat return the same.
        return ChargeResult(True, f"offline-{idempotency_key}", "captured", amount, currency)

    async def lookup(self, idempotency_key: str) -> ChargeResult | None:
        # As the charge: every key "succeeded", with nothing captured to report.
        return ChargeResult(True, f"offline-{idempotency_key}", "captured", None, None)

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

    def __init__(
        self, merchant: str, pool: asyncpg.Pool, token_ttl: int = 3600, timeout: float = DEFAULT_PROVIDER_TIMEOUT
    ) -> None:
        super().__init__(merchant, timeout)
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
            await self._outage("charge")
            async with self.pool.acquire() as conn:
                error = await self.validate_token(token)
                if error is not None:
                    # Unchargeable now, but a key already used keeps its first result.
                    row = await conn.fetchrow(_SELECT_CHARGE, idempotency_key)
                    if row is not None:
                        return _charge_result(row)
                    raise InvalidToken(error)
                captured = amount
                if token == VALID_NONCE:
                    outcome = (True, "captured", None, "Visa", "1881")
                elif token == WRONG_AMOUNT_NONCE:
                    outcome = (True, "captured", None, "Visa", "1881")
                    captured = amount + 1
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
                    RETURNING reference, amount, currency, success, status, message, card_type, last_four
                    """,
                    idempotency_key,
                    f"sbx_{secrets.token_hex(8)}",
                    captured,
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

    async def lookup(self, idempotency_key: str) -> ChargeResult | None:
        try:
            await self._outage("lookup")
            row = await self.pool.fetchrow(_SELECT_CHARGE, idempotency_key)
        except (OSError, asyncpg.PostgresConnectionError, TimeoutError) as exc:
            raise ProviderError(f"sandbox unreachable: {type(exc).__name__}") from exc
        return None if row is None else _charge_result(row)

    async def _outage(self, operation: str) -> None:
        """Fail this call if an outage of its operation is on (`sandbox_outages`), using one of its calls."""
        failure = await self.pool.fetchval(_TAKE_OUTAGE_CALL, operation)
        if failure == "error":
            raise ProviderError("sandbox answered 503 Service Unavailable")
        if failure == "timeout":
            # No answer: the caller's timeout gives up first. Bounded so nothing waits forever.
            await asyncio.sleep(OUTAGE_SILENCE)
            raise ProviderError("sandbox answered 504 Gateway Timeout")

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
    "SELECT reference, amount, currency, success, status, message, card_type, last_four "
    "FROM sandbox_charges WHERE idempotency_key = $1"
)
# The first outage with calls remaining loses one; `remaining > 0` is checked again on the row
# it updates, so concurrent calls never take it below zero.
_TAKE_OUTAGE_CALL = """
    UPDATE sandbox_outages SET remaining = remaining - 1
    WHERE id = (SELECT min(id) FROM sandbox_outages WHERE operation = $1 AND remaining > 0) AND remaining > 0
    RETURNING failure
"""
# How long a sandbox in a 'timeout' outage stays silent before it answers 504.
OUTAGE_SILENCE = 60.0


def _charge_result(row: asyncpg.Record) -> ChargeResult:
    return ChargeResult(
        success=row["success"],
        reference=row["reference"],
        status=row["status"],
        amount=row["amount"],
        currency=row["currency"],
        message=row["message"],
        card_type=row["card_type"],
        last_four=row["last_four"],
    )


# driver -> how to build it from (merchant, side pool, client token ttl, call timeout)
DRIVERS = {
    "offline": lambda merchant, pool, ttl, timeout: OfflineProvider(merchant, timeout),
    "sandbox": lambda merchant, pool, ttl, timeout: SandboxProvider(merchant, pool, ttl, timeout),
}


def build_providers(
    merchant: str,
    pool: asyncpg.Pool,
    token_ttl: int,
    *,
    sandbox: bool = True,
    timeout: float = DEFAULT_PROVIDER_TIMEOUT,
) -> dict[str, Provider]:
    """The enabled providers: the sandbox only when `sandbox` (development)."""
    return {
        driver: factory(merchant, pool, token_ttl, timeout)
        for driver, factory in DRIVERS.items()
        if sandbox or driver != "sandbox"
    }


T = TypeVar("T")


async def answer(provider: Provider, call: Awaitable[T]) -> T:
    """A provider call bounded by the provider's timeout. Past it the call counts as unavailable
    and is retried later: the provider may have acted on it meanwhile, and asking again with the
    same idempotency key gets that result instead of a second charge."""
    try:
        async with asyncio.timeout(provider.timeout):
            return await call
    except TimeoutError as exc:
        raise ProviderError(f"{provider.name} did not answer within {provider.timeout:g} s") from exc


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
            settings.merchant,
            app[SIDE_POOL],
            settings.client_token_ttl,
            sandbox=settings.sandbox_enabled,
            timeout=settings.provider_timeout,
        )
        yield
        await app[SIDE_POOL].close()

    return ctx
