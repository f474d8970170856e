"""Admin refunds and voids: never more than what remains, under concurrency too."""

from __future__ import annotations

import asyncio

import pytest

from payments.app import create_app
from payments.providers import DECLINED_NONCE, VALID_NONCE
from services.payments.tests.testkit import admin
from shared.contracts import PaymentCaptured


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def captured(checkout, amount: int = 1000, handle: str = "card") -> str:
    await checkout.deliver(
        await checkout.request(VALID_NONCE if handle == "card" else None, handle=handle, amount=amount)
    )
    event = checkout.emitted[-1]
    assert isinstance(event, PaymentCaptured)
    return event.transaction.id


async def refund(client, charge_id: str, body: dict):
    response = await client.post(f"/api/v1/payments/{charge_id}/refund", json=body, headers=admin())
    return response.status, await response.json()


async def test_partial_refunds_add_up_to_the_total_then_are_refused(client, checkout, pool):
    charge_id = await captured(checkout, 1000)
    status, body = await refund(client, charge_id, {"amount": 300, "notes": "damaged box"})
    assert status == 200, body
    data = body["data"]
    assert (data["amount"], data["refund"], data["success"], data["status"], data["notes"]) == (
        300,
        True,
        True,
        "refunded",
        "damaged box",
    )
    assert data["id"] != charge_id
    assert set(data) == {
        "id",
        "transaction_id",
        "merchant",
        "amount",
        "currency",
        "provider",
        "driver",
        "success",
        "refund",
        "status",
        "card_type",
        "last_four",
        "notes",
        "created_at",
    }
    assert (await refund(client, charge_id, {"amount": 701}))[0] == 400
    status, body = await refund(client, charge_id, {"amount": 700})
    assert (status, body["data"]["amount"]) == (200, 700)
    status, body = await refund(client, charge_id, {"amount": 1})
    assert (status, body) == (400, {"error": {"http_code": 400, "message": "Refund already issued"}})
    row = await pool.fetchrow("SELECT status, refunded_total FROM transactions WHERE id = $1", charge_id)
    assert (row["status"], row["refunded_total"]) == ("refunded", 1000)
    refunds = await pool.fetch("SELECT amount FROM transactions WHERE parent_id = $1 AND kind = 'refund'", charge_id)
    assert sorted(r["amount"] for r in refunds) == [300, 700]
    processor = await pool.fetchval(
        "SELECT s.refunded FROM sandbox_charges s JOIN transactions t ON t.transaction_id = s.reference "
        "WHERE t.id = $1",
        charge_id,
    )
    assert processor == 1000


async def test_refund_events_carry_the_running_total(client, checkout, observe):
    observer = await observe("payment.refunded.v1")
    charge_id = await captured(checkout, 1000)
    order_id = checkout.emitted[-1].order_id
    await refund(client, charge_id, {"amount": 400})
    await refund(client, charge_id, {"amount": 600})
    events = await observer.collect(lambda e: e["payload"]["order_id"] == order_id, 2)
    got = sorted((e["payload"]["refunded_total"], e["payload"]["fully_refunded"]) for e in events)
    assert got == [(400, False), (1000, True)]
    assert all(e["correlation_id"] for e in events)  # the request id of the admin call


async def test_refund_without_amount_refunds_what_remains(client, checkout):
    charge_id = await captured(checkout, 800)
    await refund(client, charge_id, {"amount": 300})
    status, body = await refund(client, charge_id, {})
    assert (status, body["data"]["amount"]) == (200, 500)


async def test_concurrent_refunds_never_exceed_the_charge(client, checkout, pool):
    charge_id = await captured(checkout, 1000)
    results = await asyncio.gather(*(refund(client, charge_id, {"amount": 300}) for _ in range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 200, 400, 400, 400, 400, 400]
    refused = {body["error"]["message"] for status, body in results if status == 400}
    assert refused == {"Amount exceeds remaining balance"}
    row = await pool.fetchrow("SELECT status, refunded_total FROM transactions WHERE id = $1", charge_id)
    assert (row["status"], row["refunded_total"]) == ("captured", 900)
    total = await pool.fetchval("SELECT sum(amount) FROM transactions WHERE parent_id = $1", charge_id)
    assert total == 900


BAD_REFUNDS = [{"amount": 0}, {"amount": -5}, {"amount": "12"}, {"amount": 1.5}, {"notes": 5}, {"notes": "a\u0000"}]


@pytest.mark.parametrize("body", BAD_REFUNDS)
async def test_refund_body_is_validated(client, checkout, body):
    charge_id = await captured(checkout, 1000)
    status, payload = await refund(client, charge_id, body)
    assert status == 422
    assert set(payload) <= {"amount", "notes"}


async def test_refund_needs_admin_and_a_known_charge(client, checkout):
    charge_id = await captured(checkout, 1000)
    response = await client.post(f"/api/v1/payments/{charge_id}/refund", json={"amount": 1})
    assert response.status == 401
    assert (await refund(client, "nosuchpayment0000", {"amount": 1}))[0] == 404
    assert (await refund(client, "NOT-AN-ID", {"amount": 1}))[0] == 404


async def test_a_declined_charge_cannot_be_refunded_or_voided(client, checkout):
    await checkout.deliver(await checkout.request(DECLINED_NONCE))
    charge_id = checkout.emitted[-1].transaction.id
    assert await refund(client, charge_id, {"amount": 1}) == (
        400,
        {"error": {"http_code": 400, "message": "Only a captured payment can be refunded"}},
    )
    response = await client.post(f"/api/v1/payments/{charge_id}/void", headers=admin())
    assert response.status == 400


async def test_void_an_unrefunded_capture_once(client, checkout, pool, observe):
    observer = await observe("payment.voided.v1")
    charge_id = await captured(checkout, 1200)
    response = await client.post(f"/api/v1/payments/{charge_id}/void", headers=admin())
    assert response.status == 200
    data = (await response.json())["data"]
    assert (data["id"], data["status"], data["amount"]) == (charge_id, "voided", 1200)
    again = await client.post(f"/api/v1/payments/{charge_id}/void", headers=admin())
    assert (again.status, (await again.json())["error"]["message"]) == (400, "This payment has already been voided")
    assert (await refund(client, charge_id, {"amount": 1}))[0] == 400
    kinds = await pool.fetch("SELECT kind, status FROM transactions WHERE parent_id = $1", charge_id)
    assert [(r["kind"], r["status"]) for r in kinds] == [("void", "voided")]
    [event] = await observer.collect(lambda e: e["payload"]["transaction"]["id"] == charge_id, 1)
    assert event["payload"]["transaction"]["status"] == "voided"


async def test_a_refunded_capture_cannot_be_voided(client, checkout):
    charge_id = await captured(checkout, 1000)
    await refund(client, charge_id, {"amount": 1})
    response = await client.post(f"/api/v1/payments/{charge_id}/void", headers=admin())
    assert (response.status, (await response.json())["error"]["message"]) == (
        400,
        "Only an unrefunded captured payment can be voided",
    )


async def test_offline_payments_refund_and_void(client, checkout):
    first = await captured(checkout, 500, handle="offline")
    status, body = await refund(client, first, {"amount": 500})
    assert (status, body["data"]["driver"], body["data"]["transaction_id"]) == (
        200,
        "offline",
        body["data"]["transaction_id"],
    )
    second = await captured(checkout, 500, handle="offline")
    response = await client.post(f"/api/v1/payments/{second}/void", headers=admin())
    assert response.status == 200
