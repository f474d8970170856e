"""Sign-in at `POST /oauth/token` (password and refresh grants), sign-out at `POST /oauth/revoke`
and the sign-in throttle, against the real database."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest

from customers import domain
from customers.app import create_app
from services.customers.tests.testkit import (
    API,
    new_client_address,
    new_email,
    register,
    sign_in,
    token_request,
)
from shared.identity import CUSTOMER_TOKEN_AUDIENCE, CUSTOMER_TOKEN_ISSUER

INVALID_CREDENTIALS = {"error": {"http_code": 400, "message": "The user credentials were incorrect."}}
INVALID_REFRESH = {"error": {"http_code": 400, "message": "The refresh token is invalid."}}


def password_grant(account, secret: str | None = None) -> dict[str, str]:
    return {"grant_type": "password", "username": account.email, "password": secret or account.secret}


def refresh_grant(tokens) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}


@pytest.mark.parametrize("form", [True, False], ids=["form", "json"])
async def test_a_sign_in_answers_an_access_token_and_a_refresh_token(client, settings, pool, form):
    account = await register(client)
    body = password_grant(account) | {"client_id": "2", "client_secret": "ignored", "scope": ""}
    status, tokens, headers = await token_request(client, body, address=new_client_address(), form=form)
    assert status == 200, tokens
    assert set(tokens) == {"token_type", "expires_in", "access_token", "refresh_token"}
    assert (tokens["token_type"], tokens["expires_in"]) == ("Bearer", settings.access_token_ttl)
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"

    claims = jwt.decode(
        tokens["access_token"],
        settings.customer_token_secret,
        algorithms=["HS256"],
        issuer=CUSTOMER_TOKEN_ISSUER,
        audience=CUSTOMER_TOKEN_AUDIENCE,
    )
    assert claims["sub"] == account.id
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl
    assert abs(claims["iat"] - time.time()) < 5
    # Only a digest of the refresh token is kept.
    stored = await pool.fetch(
        "SELECT t.token_hash FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE s.customer_id = $1",
        account.id,
    )
    assert [row["token_hash"] for row in stored] == [domain.refresh_token_hash(tokens["refresh_token"])]


async def test_the_email_is_matched_whatever_its_case(client):
    account = await register(client)
    body = password_grant(account) | {"username": account.email.upper()}
    assert (await token_request(client, body, address=new_client_address()))[0] == 200


@pytest.mark.parametrize("wrong", ["password", "email"])
async def test_wrong_credentials_are_one_answer_whatever_was_wrong(client, wrong):
    account = await register(client)
    body = password_grant(account, "not-" + account.secret) if wrong == "password" else password_grant(account)
    if wrong == "email":
        body["username"] = new_email()
    status, answer, _ = await token_request(client, body, address=new_client_address())
    assert (status, answer) == (400, INVALID_CREDENTIALS)


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        (
            {"grant_type": "client_credentials"},
            400,
            {
                "error": {
                    "http_code": 400,
                    "message": "The authorization grant type is not supported by the authorization server.",
                }
            },
        ),
        (
            {"grant_type": "password"},
            422,
            {"username": ["The username field is required."], "password": ["The password field is required."]},
        ),
        ({"grant_type": "refresh_token"}, 422, {"refresh_token": ["The refresh token field is required."]}),
        ({"username": "a@example.com", "password": "x"}, 422, None),
    ],
)
async def test_malformed_token_requests(client, body, status, answer):
    got_status, got, _ = await token_request(client, body, address=new_client_address())
    assert got_status == status
    if answer is not None:
        assert got == answer


async def test_a_refresh_rotates_the_refresh_token(client, aiohttp_client, settings):
    # No grace: a spent token is refused at once.
    strict = await aiohttp_client(create_app(settings.model_copy(update={"refresh_reuse_grace": 0.0})))
    account = await register(strict)
    address = new_client_address()
    first = await sign_in(strict, account)
    status, second, _ = await token_request(strict, refresh_grant(first), address=address)
    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert jwt.decode(second["access_token"], options={"verify_signature": False})["sub"] == account.id

    status, third, _ = await token_request(strict, refresh_grant(second), address=address)
    assert status == 200
    # The first one was spent: presenting it again is someone else using a copy, and ends the
    # whole session, the newest token included.
    assert (await token_request(strict, refresh_grant(first), address=address))[:2] == (400, INVALID_REFRESH)
    assert (await token_request(strict, refresh_grant(third), address=address))[:2] == (400, INVALID_REFRESH)
    # Another sign-in, another session: untouched.
    other = await sign_in(strict, account)
    assert (await token_request(strict, refresh_grant(other), address=address))[0] == 200


async def test_a_retry_within_the_grace_gets_a_new_pair_and_the_session_goes_on(client):
    account = await register(client)
    address = new_client_address()
    first = await sign_in(client, account)
    statuses = await asyncio.gather(*(token_request(client, refresh_grant(first), address=address) for _ in range(3)))
    assert [status for status, _, _ in statuses] == [200] * 3
    pairs = [tokens for _, tokens, _ in statuses]
    assert len({tokens["refresh_token"] for tokens in pairs}) == 3
    for tokens in pairs:
        assert (await token_request(client, refresh_grant(tokens), address=address))[0] == 200


async def test_an_expired_refresh_token_is_refused(client, pool):
    account = await register(client)
    tokens = await sign_in(client, account)
    await pool.execute(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        domain.refresh_token_hash(tokens["refresh_token"]),
    )
    assert (await token_request(client, refresh_grant(tokens), address=new_client_address()))[:2] == (
        400,
        INVALID_REFRESH,
    )


async def test_sign_out_revokes_the_session(client, pool):
    account = await register(client)
    address = new_client_address()
    tokens = await sign_in(client, account)
    status, renewed, _ = await token_request(client, refresh_grant(tokens), address=address)
    assert status == 200
    kept = await sign_in(client, account)  # another device

    response = await client.post(f"{API}/oauth/revoke", json={"token": renewed["refresh_token"]})
    assert response.status == 200
    assert await response.json() == {"message": "Signed out"}
    for spent in (tokens, renewed):
        assert (await token_request(client, refresh_grant(spent), address=address))[:2] == (400, INVALID_REFRESH)
    assert (await token_request(client, refresh_grant(kept), address=address))[0] == 200

    # Unknown and revoked tokens get the same answer (RFC 7009), and change nothing.
    before = await pool.fetch("SELECT id, revoked_at FROM sessions WHERE customer_id = $1 ORDER BY id", account.id)
    for token in (renewed["refresh_token"], "not-a-token", renewed["access_token"]):
        response = await client.post(f"{API}/oauth/revoke", data={"token": token, "token_type_hint": "refresh_token"})
        assert (response.status, await response.json()) == (200, {"message": "Signed out"})
    after = await pool.fetch("SELECT id, revoked_at FROM sessions WHERE customer_id = $1 ORDER BY id", account.id)
    assert after == before


async def failed(pool, key: bytes, seconds_ago: float, failures: int | None = None) -> None:
    """The key's last failure `seconds_ago` (and its count set): time passing, as every replica
    sees it, without waiting for it."""
    await pool.execute(
        "UPDATE signin_failures SET last_failure_at = now() - make_interval(secs => $2), "
        "failures = coalesce($3, failures) WHERE key_hash = $1",
        key,
        seconds_ago,
        failures,
    )


async def test_repeated_failures_for_one_email_are_slowed_then_refused(client, pool):
    account = await register(client)
    key = domain.throttle_key("email", account.email)
    wrong = password_grant(account, "not-" + account.secret)
    for _ in range(5):  # free, and from five addresses: the email's own count
        assert (await token_request(client, wrong, address=new_client_address()))[:2] == (400, INVALID_CREDENTIALS)
    # Slowed: right after the fifth, the next attempt waits a second, even with the right password.
    await failed(pool, key, 0)
    status, answer, headers = await token_request(client, password_grant(account), address=new_client_address())
    assert status == 429
    assert answer == {"error": {"http_code": 429, "message": "Too many failed attempts: wait before trying again."}}
    assert headers["Retry-After"] == "1"
    await failed(pool, key, 1.0)  # a second later it may go on
    assert (await token_request(client, wrong, address=new_client_address()))[0] == 400
    await failed(pool, key, 0)
    status, _, headers = await token_request(client, wrong, address=new_client_address())
    assert (status, headers["Retry-After"]) == (429, "2")  # doubled

    # Refused for a while once ten have failed.
    await failed(pool, key, 0, failures=10)
    status, _, headers = await token_request(client, password_grant(account), address=new_client_address())
    assert status == 429 and 890 < int(headers["Retry-After"]) <= 900

    # Once the lockout is over, the right password signs in and the count is forgotten.
    await failed(pool, key, 16 * 60)
    assert (await token_request(client, password_grant(account), address=new_client_address()))[0] == 200
    assert await pool.fetchval("SELECT count(*) FROM signin_failures WHERE key_hash = $1", key) == 0


async def test_repeated_failures_from_one_client_are_slowed_across_emails(client, pool):
    account = await register(client)
    address = new_client_address()
    for _ in range(domain.CLIENT_POLICY.free):
        body = {"grant_type": "password", "username": new_email(), "password": "guess-1234"}
        assert (await token_request(client, body, address=address))[0] == 400
    await failed(pool, domain.throttle_key("client", address), 0)
    status, _, headers = await token_request(client, password_grant(account), address=address)
    assert (status, headers["Retry-After"]) == (429, "1")
    # Another client is not held back by this one.
    assert (await token_request(client, password_grant(account), address=new_client_address()))[0] == 200


async def test_a_burst_of_guesses_gets_no_more_than_the_policy_allows(client, pool):
    """Fired all at once, guesses do not slip through on a count read before the others were
    added: each is counted before its password is checked. One failure short of the lockout, and
    past the last delay, one guess of twelve is checked and locks the account."""
    account = await register(client)
    key = domain.throttle_key("email", account.email)
    await pool.execute(
        "INSERT INTO signin_failures (key_hash, failures, last_failure_at) VALUES ($1, 9, now() - interval '1 minute')",
        key,
    )
    wrong = password_grant(account, "not-" + account.secret)
    results = await asyncio.gather(*(token_request(client, wrong, address=new_client_address()) for _ in range(12)))
    assert sorted(status for status, _, _ in results) == [400] + [429] * 11
    assert await pool.fetchval("SELECT failures FROM signin_failures WHERE key_hash = $1", key) == 10


async def test_a_good_sign_in_takes_back_its_count_from_the_client(client, pool):
    address = new_client_address()
    account = await register(client)
    for _ in range(3):
        await sign_in(client, account, address=address)
    key = domain.throttle_key("client", address)
    assert await pool.fetchval("SELECT failures FROM signin_failures WHERE key_hash = $1", key) == 0


async def test_an_idempotency_key_never_keeps_tokens(client, pool):
    """A token answer is `no-store`: the idempotency record is let go instead of keeping the
    tokens (and a fast hash of the password); a retry with the key signs in again."""
    account = await register(client)
    key = str(uuid.uuid4())
    answers = []
    for _ in range(2):
        response = await client.post(
            f"{API}/oauth/token",
            json=password_grant(account),
            headers={"Idempotency-Key": key, "X-Forwarded-For": new_client_address()},
        )
        assert response.status == 200
        assert "Idempotent-Replayed" not in response.headers
        answers.append(await response.json())
    assert answers[0]["refresh_token"] != answers[1]["refresh_token"]
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key) == 0


async def test_a_hash_made_at_another_cost_is_made_again_at_sign_in(client, aiohttp_client, settings, pool):
    account = await register(client)
    stored = "SELECT password_hash FROM customers WHERE id = $1"
    assert "$m=1024,t=1," in await pool.fetchval(stored, account.id)
    costlier = settings.model_copy(update={"password_hash_memory_kib": 2048, "password_hash_time_cost": 2})
    await sign_in(await aiohttp_client(create_app(costlier)), account)
    assert "$m=2048,t=2," in await pool.fetchval(stored, account.id)
    await sign_in(client, account)  # the same password still, whatever the cost it was hashed at
