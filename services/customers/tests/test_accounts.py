"""Registration, the current user and the password change, against the real database and bus."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher

from customers import domain
from services.customers.tests.testkit import (
    API,
    customer_headers,
    new_client_address,
    new_email,
    new_secret,
    register,
    sign_in,
    token_request,
)
from shared.http import new_id
from tests.support import identity_headers


async def test_registration_answers_the_user_and_the_customer_and_announces_it(client, pool, observe):
    observer = await observe("customer.registered.v1")
    email = new_email()
    secret = new_secret()
    response = await client.post(
        f"{API}/customers?include=customer",
        json={
            "firstname": " Ada ",
            "lastname": "Lovelace",
            "email": email,
            "password": secret,
            "password_confirmation": secret,
            "company_name": "Analytical Engines Ltd",
            "vat_no": "GB123456789",
            "contact_number": "+44 20 7946 0000",
        },
    )
    assert response.status == 201, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    user = (await response.json())["data"]
    assert user == {
        "id": user["id"],
        "email": email,
        "name": "Ada Lovelace",
        "customer": {
            "data": {
                "id": user["id"],
                "firstname": "Ada",
                "lastname": "Lovelace",
                "company_name": "Analytical Engines Ltd",
                "contact_number": "+44 20 7946 0000",
                "alt_contact_number": None,
                "vat_no": "GB123456789",
            }
        },
    }
    # The password is kept only as an argon2id hash of itself.
    stored = await pool.fetchval("SELECT password_hash FROM customers WHERE id = $1", user["id"])
    assert stored.startswith("$argon2id$") and secret not in stored
    assert PasswordHasher().verify(stored, secret)

    [event] = await observer.collect(lambda e: e["payload"]["customer_id"] == user["id"], 1)
    assert event["producer"] == "customers"
    assert {k: event["payload"][k] for k in ("email", "firstname", "lastname", "company_name")} == {
        "email": email,
        "firstname": "Ada",
        "lastname": "Lovelace",
        "company_name": "Analytical Engines Ltd",
    }
    assert secret not in str(event)


async def test_without_include_the_user_alone(client):
    response = await client.post(
        f"{API}/customers", json={"firstname": "A", "lastname": "B", "email": new_email(), "password": new_secret()}
    )
    assert response.status == 201
    assert set((await response.json())["data"]) == {"id", "email", "name"}


async def test_an_email_is_taken_whatever_its_case(client, pool):
    account = await register(client)
    before = await pool.fetchval("SELECT count(*) FROM customers")
    for email in (account.email.upper(), account.email.capitalize(), account.email):
        response = await client.post(
            f"{API}/customers", json={"firstname": "Eve", "lastname": "X", "email": email, "password": new_secret()}
        )
        assert response.status == 422
        assert await response.json() == {"email": ["The email has already been taken."]}
    assert await pool.fetchval("SELECT count(*) FROM customers") == before


async def test_concurrent_registrations_of_one_email_make_one_account(client, pool):
    email = new_email()

    async def attempt(variant: str) -> int:
        body = {"firstname": "Ada", "lastname": "L", "email": variant, "password": new_secret()}
        return (await client.post(f"{API}/customers", json=body)).status

    statuses = await asyncio.gather(*(attempt(v) for v in (email, email.upper(), email.title(), email) * 2))
    assert sorted(statuses) == [201] + [422] * 7
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE lower(email) = lower($1)", email) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"firstname": ""}, "firstname"),
        ({"firstname": None}, "firstname"),
        ({"lastname": "x" * 101}, "lastname"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "password123"}, "password"),
        ({"password": "x" * 257}, "password"),
        ({"password_confirmation": "something else"}, "password"),
        ({"vat_no": "x" * 41}, "vat_no"),
        ({"company_name": ["x"]}, "company_name"),
    ],
)
async def test_registration_validation_writes_nothing(client, pool, change, field):
    body = {"firstname": "Ada", "lastname": "Lovelace", "email": new_email(), "password": new_secret()} | change
    response = await client.post(f"{API}/customers", json=body)
    assert response.status == 422
    assert field in await response.json()
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE lower(email) = lower($1)", body["email"]) == 0


async def test_registration_by_form_as_upstream_clients_post_it(client):
    body = {"firstname": "Ada", "lastname": "Lovelace", "email": new_email(), "password": new_secret()}
    response = await client.post(f"{API}/customers", data=body)
    assert response.status == 201, await response.text()
    assert (await response.json())["data"]["email"] == body["email"]


async def test_the_current_user_with_the_customer_and_addresses(client):
    account = await register(client, company_name="ACME")
    response = await client.get(f"{API}/users/current", headers=account.headers())
    assert response.status == 200
    assert await response.json() == {"data": {"id": account.id, "email": account.email, "name": "Ada Lovelace"}}

    response = await client.get(f"{API}/users/current?include=customer,addresses", headers=account.headers())
    user = (await response.json())["data"]
    assert user["customer"]["data"]["company_name"] == "ACME"
    assert user["addresses"] == {"data": []}


async def test_the_current_user_needs_a_customer(client):
    assert (await client.get(f"{API}/users/current")).status == 401
    # An admin is not a customer; a customer that is gone is nobody.
    assert (await client.get(f"{API}/users/current", headers=identity_headers())).status == 401
    assert (await client.get(f"{API}/users/current", headers=customer_headers(new_id()))).status == 401
    # A header someone made up, not the gateway.
    forged = customer_headers(new_id()) | {"X-Commerce-Identity": '{"sub":"x","roles":["customer"]}'}
    assert (await client.get(f"{API}/users/current", headers=forged)).status == 401


async def test_a_password_change_ends_every_session_and_takes_the_new_password(client, pool, observe):
    observer = await observe("customer.password_changed.v1")
    account = await register(client)
    first, second = await sign_in(client, account), await sign_in(client, account)
    new = new_secret()
    response = await client.post(
        f"{API}/account/password",
        json={"current_password": account.secret, "password": new, "password_confirmation": new},
        headers=account.headers(),
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {"message": "Password changed"}
    assert response.headers["Cache-Control"] == "no-store"

    address = new_client_address()
    for tokens in (first, second):
        body = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert (await token_request(client, body, address=address))[0] == 400
    old = {"grant_type": "password", "username": account.email, "password": account.secret}
    assert (await token_request(client, old, address=address))[0] == 400
    fresh = {"grant_type": "password", "username": account.email, "password": new}
    assert (await token_request(client, fresh, address=address))[0] == 200

    [event] = await observer.collect(lambda e: e["payload"]["customer_id"] == account.id, 1)
    assert set(event["payload"]) == {"customer_id", "changed_at"}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"current_password": "wrong-one", "password": "a fine new one", "password_confirmation": "a fine new one"},
            {"current_password": ["The current password is incorrect."]},
        ),
        (
            {"current_password": None, "password": "a fine new one", "password_confirmation": "a fine new one"},
            None,
        ),
        (
            {"current_password": "-", "password": "a fine new one", "password_confirmation": "another one"},
            {"password": ["The password confirmation does not match."]},
        ),
        (
            {"current_password": "-", "password": "qwertyuiop", "password_confirmation": "qwertyuiop"},
            {"password": ["This password is too easy to guess: choose another one."]},
        ),
    ],
)
async def test_a_refused_password_change_changes_nothing(client, pool, body, errors):
    account = await register(client)
    before = await pool.fetchrow("SELECT password_hash, password_changed_at FROM customers WHERE id = $1", account.id)
    tokens = await sign_in(client, account)
    response = await client.post(f"{API}/account/password", json=body, headers=account.headers())
    assert response.status == 422
    if errors is not None:
        assert await response.json() == errors
    after = await pool.fetchrow("SELECT password_hash, password_changed_at FROM customers WHERE id = $1", account.id)
    assert after == before
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert (await token_request(client, refresh, address=new_client_address()))[0] == 200  # still signed in


async def test_a_password_change_needs_a_customer(client):
    body = {"current_password": "x", "password": "a fine new one", "password_confirmation": "a fine new one"}
    assert (await client.post(f"{API}/account/password", json=body)).status == 401
    assert (await client.post(f"{API}/account/password", json=body, headers=identity_headers())).status == 401


async def test_guessing_the_current_password_is_throttled_like_a_sign_in(client, pool):
    account = await register(client)
    wrong = {"current_password": "not-it", "password": "a fine new one", "password_confirmation": "a fine new one"}
    for _ in range(5):  # the free ones
        response = await client.post(f"{API}/account/password", json=wrong, headers=account.headers())
        assert response.status == 422
    key = domain.throttle_key("email", account.email)
    await pool.execute("UPDATE signin_failures SET last_failure_at = now() WHERE key_hash = $1", key)
    response = await client.post(f"{API}/account/password", json=wrong, headers=account.headers())
    assert response.status == 429  # slowed: right after the fifth, a second to wait
    assert response.headers["Retry-After"] == "1"
    # Ten failures lock the account's password checks; the right password is refused too while
    # they are locked: waiting is the only way on.
    await pool.execute("UPDATE signin_failures SET failures = 10, last_failure_at = now() WHERE key_hash = $1", key)
    right = wrong | {"current_password": account.secret}
    response = await client.post(f"{API}/account/password", json=right, headers=account.headers())
    assert response.status == 429
    assert 800 < int(response.headers["Retry-After"]) <= 900
    assert await response.json() == {
        "error": {"http_code": 429, "message": "Too many failed attempts: wait before trying again."}
    }
    assert await pool.fetchval("SELECT password_changed_at = created_at FROM customers WHERE id = $1", account.id)
