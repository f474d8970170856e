"""The providers behind the one interface, and the pure refund/void rules."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from payments import domain
from payments.providers import (
    CONSUMED_NONCE,
    DECLINED_NONCE,
    TOKEN_CONSUMED,
    TOKEN_REQUIRED,
    VALID_NONCE,
    InvalidToken,
    OfflineProvider,
)


async def test_offline_needs_no_token_and_always_captures():
    offline = OfflineProvider("shop")
    token = await offline.client_token()
    assert (token.value, token.expires_at) == ("OFFLINE", None)
    assert await offline.validate_token(None) is None
    first = await offline.charge(1234, "GBP", None, idempotency_key="k1")
    assert (first.success, first.status, first.reference) == (True, "captured", "offline-k1")
    assert await offline.charge(1234, "GBP", None, idempotency_key="k1") == first
    assert (await offline.refund(first.reference, 100, "r1")).success
    assert (await offline.void(first.reference)).success


async def test_sandbox_client_tokens_are_fresh_and_expire(providers):
    sandbox = providers["sandbox"]
    one, two = await sandbox.client_token(), await sandbox.client_token()
    assert one.value != two.value
    assert one.value.startswith("sandbox-")
    assert one.expires_at is not None


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (VALID_NONCE, None),
        (DECLINED_NONCE, None),
        ("anything", None),
        (CONSUMED_NONCE, TOKEN_CONSUMED),
        (None, TOKEN_REQUIRED),
        ("", TOKEN_REQUIRED),
    ],
)
async def test_sandbox_validates_tokens(providers, token, error):
    assert await providers["sandbox"].validate_token(token) == error


@pytest.mark.parametrize(
    ("token", "success", "status", "last_four"),
    [
        (VALID_NONCE, True, "captured", "1881"),
        (DECLINED_NONCE, False, "declined", "0002"),
        ("tok_unknown", False, "declined", None),
    ],
)
async def test_sandbox_charge_outcomes(providers, pool, token, success, status, last_four):
    key = str(uuid.uuid4())
    result = await providers["sandbox"].charge(2500, "GBP", token, idempotency_key=key)
    assert (result.success, result.status, result.last_four) == (success, status, last_four)
    assert result.reference.startswith("sbx_")
    row = await pool.fetchrow("SELECT amount, success FROM sandbox_charges WHERE idempotency_key = $1", key)
    assert (row["amount"], row["success"]) == (2500, success)


async def test_sandbox_consumed_nonce_is_invalid_and_charges_nothing(providers, pool):
    key = str(uuid.uuid4())
    with pytest.raises(InvalidToken, match="more than once"):
        await providers["sandbox"].charge(2500, "GBP", CONSUMED_NONCE, idempotency_key=key)
    assert await pool.fetchval("SELECT count(*) FROM sandbox_charges WHERE idempotency_key = $1", key) == 0


async def test_sandbox_honours_idempotency_keys(providers, pool):
    sandbox = providers["sandbox"]
    key = str(uuid.uuid4())
    results = await asyncio.gather(*(sandbox.charge(700, "GBP", VALID_NONCE, idempotency_key=key) for _ in range(5)))
    assert len({r.reference for r in results}) == 1
    # A repeat with another token (or amount) still returns the first result: never a second capture.
    again = await sandbox.charge(9999, "GBP", DECLINED_NONCE, idempotency_key=key)
    assert again == results[0]
    rows = await pool.fetch("SELECT amount FROM sandbox_charges WHERE idempotency_key = $1", key)
    assert [r["amount"] for r in rows] == [700]


async def test_sandbox_refunds_and_voids_on_its_side(providers):
    sandbox = providers["sandbox"]
    charge = await sandbox.charge(1000, "GBP", VALID_NONCE, idempotency_key=str(uuid.uuid4()))
    first = await sandbox.refund(charge.reference, 600, "rf-1")
    assert first.success
    assert await sandbox.refund(charge.reference, 600, "rf-1") == first  # same key, same refund
    refused = await sandbox.refund(charge.reference, 401, "rf-2")
    assert (refused.success, refused.message) == (False, "Amount exceeds remaining balance")
    assert (await sandbox.refund(charge.reference, 400, "rf-3")).success
    assert not (await sandbox.void(charge.reference)).success  # refunded: cannot be voided
    other = await sandbox.charge(1000, "GBP", VALID_NONCE, idempotency_key=str(uuid.uuid4()))
    assert (await sandbox.void(other.reference)).success
    assert not (await sandbox.refund(other.reference, 1, "rf-4")).success


# ---------------------------------------------------------------------------------------------
# Pure rules


@pytest.mark.parametrize(
    ("status", "amount", "refunded", "requested", "expected"),
    [
        ("captured", 1000, 0, 400, (400, 400, False, "captured")),
        ("captured", 1000, 400, 600, (600, 1000, True, "refunded")),
        ("captured", 1000, 400, None, (600, 1000, True, "refunded")),
        ("captured", 1000, 0, 1000, (1000, 1000, True, "refunded")),
    ],
)
def test_plan_refund(status, amount, refunded, requested, expected):
    plan = domain.plan_refund("charge", status, amount, refunded, requested)
    assert (plan.amount, plan.refunded_total, plan.fully_refunded, plan.status) == expected


@pytest.mark.parametrize(
    ("kind", "status", "amount", "refunded", "requested", "message"),
    [
        ("charge", "captured", 1000, 400, 601, "Amount exceeds remaining balance"),
        ("charge", "refunded", 1000, 1000, 1, "Refund already issued"),
        ("charge", "declined", 1000, 0, 1, "Only a captured payment can be refunded"),
        ("charge", "voided", 1000, 0, 1, "Only a captured payment can be refunded"),
        ("refund", "refunded", 500, 0, 1, "Only a payment can be refunded"),
    ],
)
def test_plan_refund_refusals(kind, status, amount, refunded, requested, message):
    with pytest.raises(domain.Refused) as exc:
        domain.plan_refund(kind, status, amount, refunded, requested)
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("kind", "status", "refunded", "message"),
    [
        ("charge", "captured", 0, None),
        ("charge", "captured", 1, "Only an unrefunded captured payment can be voided"),
        ("charge", "refunded", 1000, "Only an unrefunded captured payment can be voided"),
        ("charge", "declined", 0, "Only an unrefunded captured payment can be voided"),
        ("charge", "voided", 0, "This payment has already been voided"),
        ("void", "voided", 0, "Only a payment can be voided"),
    ],
)
def test_check_void(kind, status, refunded, message):
    if message is None:
        domain.check_void(kind, status, refunded)
        return
    with pytest.raises(domain.Refused) as exc:
        domain.check_void(kind, status, refunded)
    assert exc.value.message == message
