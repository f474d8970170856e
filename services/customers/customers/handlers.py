"""HTTP handlers of the customers service (the operation table is `routes.py`).

Passwords and tokens are never logged, and the answers that carry either (or answer a request
that did) are marked `Cache-Control: no-store`, so that nothing on the way keeps them, the
idempotency record included.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from customers import domain, queries
from customers.credentials import PASSWORDS, access_token, new_refresh_token
from customers.models import AddressIn, AddressUpdate, ChangePasswordIn, IncludeQuery, RegisterIn, RevokeIn, TokenIn
from customers.settings import CustomersSettings
from customers.views import (
    AddressCollection,
    AddressResponse,
    MessageResponse,
    TokenResponse,
    UserResponse,
    address_view,
    user_view,
)
from shared import runtime
from shared.contracts import CustomerPasswordChanged, CustomerRegistered
from shared.countries import COUNTRIES_BY_CODE, COUNTRIES_BY_ID, country_code
from shared.http import (
    ApiError,
    NotFound,
    ValidationFailed,
    includes,
    json_response,
    model_response,
    new_id,
    path_id,
    query_model,
    read_json,
    require_customer,
)

log = logging.getLogger(__name__)

EMAIL_TAKEN = "The email has already been taken."
CONFIRMATION_MISMATCH = "The password confirmation does not match."
WRONG_CURRENT = "The current password is incorrect."
INVALID_CREDENTIALS = "The user credentials were incorrect."
INVALID_REFRESH_TOKEN = "The refresh token is invalid."
UNSUPPORTED_GRANT = "The authorization grant type is not supported by the authorization server."
TOO_MANY_ATTEMPTS = "Too many failed attempts: wait before trying again."
NOT_NULL = "This field cannot be null."
# RFC 6749 5.1 for issued tokens; the same for every answer to a request that carried a password.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _settings(request: web.Request) -> CustomersSettings:
    settings = request.app[runtime.SETTINGS]
    assert isinstance(settings, CustomersSettings)
    return settings


def _pool(request: web.Request) -> asyncpg.Pool:
    return request.app[runtime.POOL]


def _private(body: BaseModel, status: int = 200) -> web.Response:
    return json_response(body.model_dump(by_alias=True, exclude_unset=True), status=status, headers=NO_STORE)


def _wanted(request: web.Request) -> set[str]:
    query_model(request, IncludeQuery)  # bounded and free of NUL
    return includes(request)


def _client_address(request: web.Request) -> str:
    """Who is asking: the gateway puts the client it served in X-Forwarded-For (and only the
    gateway reaches a service); the peer itself otherwise."""
    return request.headers.get("X-Forwarded-For", "").strip()[:100] or request.remote or ""


def _too_many(wait: float, kind: str) -> ApiError:
    log.info("password checks throttled", extra={"kind": kind, "wait_seconds": round(wait, 1)})
    return ApiError(429, TOO_MANY_ATTEMPTS, headers={"Retry-After": str(max(1, math.ceil(wait)))})


# ---------------------------------------------------------------------------------------------
# Registration and the current user


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, RegisterIn)
    wanted = _wanted(request)
    errors: dict[str, list[str]] = {}
    problems = domain.password_problems(body.password, body.email)
    if body.password_confirmation is not None and body.password_confirmation != body.password:
        problems.append(CONFIRMATION_MISMATCH)
    if problems:
        errors["password"] = problems
    # Before the cost of a hash; the unique index has the last word.
    if await queries.email_taken(_pool(request), body.email):
        errors["email"] = [EMAIL_TAKEN]
    if errors:
        raise ValidationFailed(errors)
    password_hash = await request.app[PASSWORDS].hash(body.password)
    values = body.model_dump(exclude={"password", "password_confirmation"}) | {
        "id": new_id(),
        "password_hash": password_hash,
    }
    try:
        async with runtime.unit_of_work(request) as uow:
            row = await queries.insert_customer(uow.conn, values)
            uow.emit(
                CustomerRegistered(
                    customer_id=row["id"],
                    email=row["email"],
                    firstname=row["firstname"],
                    lastname=row["lastname"],
                    company_name=row["company_name"],
                    registered_at=row["created_at"],
                )
            )
    except asyncpg.UniqueViolationError as exc:
        raise ValidationFailed.one("email", EMAIL_TAKEN) from exc
    user = user_view(row, customer="customer" in wanted, addresses=[] if "addresses" in wanted else None)
    return _private(UserResponse(data=user), status=201)


async def current_user(request: web.Request) -> web.Response:
    customer_id = require_customer(request)
    wanted = _wanted(request)
    async with _pool(request).acquire() as conn:
        row = await queries.customer(conn, customer_id)
        if row is None:
            raise ApiError(401)  # a valid token of an account that is gone
        book = await queries.addresses(conn, customer_id) if "addresses" in wanted else None
    return model_response(UserResponse(data=user_view(row, customer="customer" in wanted, addresses=book)))


# ---------------------------------------------------------------------------------------------
# Sign-in: the OAuth2 token endpoint, and sign-out


async def _count_attempt(conn: asyncpg.Connection, policies: dict[bytes, domain.ThrottlePolicy]) -> float:
    """Seconds to wait when a key is throttled. Else 0, and the attempt is counted as a failure
    of every key before the password is checked (and taken back if it is right): attempts fired
    all at once meet each other's counts, so none gets through on a count read before the
    others were added."""
    now = await queries.now(conn)
    rows = {row["key_hash"]: row for row in await queries.lock_failures(conn, list(policies))}
    counts = {
        key: (rows[key]["failures"], rows[key]["last_failure_at"]) if key in rows else (0, None) for key in policies
    }
    wait = max(domain.throttle_wait(policy, *counts[key], now) for key, policy in policies.items())
    if wait > 0:
        return wait
    for key, policy in policies.items():
        await queries.record_failure(conn, key, domain.failures_after_one_more(policy, *counts[key], now))
    return 0.0


async def _new_pair(
    conn: asyncpg.Connection, session_id: str, customer_id: str, settings: CustomersSettings
) -> TokenResponse:
    refresh = new_refresh_token()
    await queries.insert_refresh_token(conn, domain.refresh_token_hash(refresh), session_id, settings.refresh_token_ttl)
    access = access_token(settings.customer_token_secret, customer_id, int(time.time()), settings.access_token_ttl)
    return TokenResponse(
        token_type="Bearer", expires_in=settings.access_token_ttl, access_token=access, refresh_token=refresh
    )


async def issue_token(request: web.Request) -> web.Response:
    body = await read_json(request, TokenIn)
    if body.grant_type == "password":
        return await _password_grant(request, body)
    if body.grant_type == "refresh_token":
        return await _refresh_grant(request, body)
    raise ApiError(400, UNSUPPORTED_GRANT)


async def _password_grant(request: web.Request, body: TokenIn) -> web.Response:
    if not body.username or not body.password:
        raise ValidationFailed(
            {name: [f"The {name} field is required."] for name in ("username", "password") if not getattr(body, name)}
        )
    email_key = domain.throttle_key("email", body.username)
    client_key = domain.throttle_key("client", _client_address(request))
    async with runtime.unit_of_work(request) as uow:
        wait = await _count_attempt(uow.conn, {email_key: domain.EMAIL_POLICY, client_key: domain.CLIENT_POLICY})
    if wait > 0:
        raise _too_many(wait, "sign-in")
    passwords = request.app[PASSWORDS]
    account = await queries.customer_by_email(_pool(request), body.username)
    if not await passwords.verify(account["password_hash"] if account else None, body.password):
        raise ApiError(400, INVALID_CREDENTIALS)
    assert account is not None
    stored = account["password_hash"]
    rehashed = await passwords.hash(body.password) if passwords.needs_rehash(stored) else None
    settings = _settings(request)
    async with runtime.unit_of_work(request) as uow:
        current = await queries.lock_customer(uow.conn, account["id"])
        if current is None or current["password_hash"] != stored:
            raise ApiError(400, INVALID_CREDENTIALS)  # changed meanwhile: this password is no longer it
        await queries.forget_failures(uow.conn, email_key)
        await queries.take_back_failure(uow.conn, client_key)
        if rehashed is not None:
            await queries.rehash_password(uow.conn, account["id"], stored, rehashed)
        session_id = new_id()
        await queries.open_session(uow.conn, session_id, account["id"])
        tokens = await _new_pair(uow.conn, session_id, account["id"], settings)
    return _private(tokens)


async def _refresh_grant(request: web.Request, body: TokenIn) -> web.Response:
    if not body.refresh_token:
        raise ValidationFailed.one("refresh_token", "The refresh token field is required.")
    settings = _settings(request)
    token_hash = domain.refresh_token_hash(body.refresh_token)
    tokens = None
    async with runtime.unit_of_work(request) as uow:
        token = await queries.lock_refresh_token(uow.conn, token_hash)
        if token is not None and token["revoked_at"] is None and token["expires_at"] > token["now"]:
            verdict = domain.refresh_verdict(token["used_at"], token["now"], settings.refresh_reuse_grace)
            if verdict == "reused":
                # Committed with the refusal below: the session stays ended.
                await queries.revoke_session(uow.conn, token["session_id"])
                log.warning("a spent refresh token was presented again: its session is revoked")
            else:
                if verdict == "rotate":
                    await queries.spend_refresh_token(uow.conn, token_hash)
                tokens = await _new_pair(uow.conn, token["session_id"], token["customer_id"], settings)
    if tokens is None:
        raise ApiError(400, INVALID_REFRESH_TOKEN)
    return _private(tokens)


async def revoke_token(request: web.Request) -> web.Response:
    """Sign-out (RFC 7009): the refresh token's session ends, with every token it rotated
    through. The same answer for a token that is unknown or already revoked (RFC 7009 2.2)."""
    body = await read_json(request, RevokeIn)
    async with runtime.unit_of_work(request) as uow:
        await queries.revoke_session_of_token(uow.conn, domain.refresh_token_hash(body.token))
    return _private(MessageResponse(message="Signed out"))


async def change_password(request: web.Request) -> web.Response:
    customer_id = require_customer(request)
    body = await read_json(request, ChangePasswordIn)
    account = await queries.customer(_pool(request), customer_id)
    if account is None:
        raise ApiError(401)
    problems = domain.password_problems(body.password, account["email"])
    if body.password_confirmation != body.password:
        problems.append(CONFIRMATION_MISMATCH)
    if problems:
        raise ValidationFailed({"password": problems})
    # The current password is guessed at here as at sign-in (with a stolen access token): the
    # account's own throttle counts these checks too.
    email_key = domain.throttle_key("email", account["email"])
    async with runtime.unit_of_work(request) as uow:
        wait = await _count_attempt(uow.conn, {email_key: domain.EMAIL_POLICY})
    if wait > 0:
        raise _too_many(wait, "password change")
    passwords = request.app[PASSWORDS]
    stored = account["password_hash"]
    if not await passwords.verify(stored, body.current_password):
        raise ValidationFailed.one("current_password", WRONG_CURRENT)
    new_hash = await passwords.hash(body.password)
    async with runtime.unit_of_work(request) as uow:
        current = await queries.lock_customer(uow.conn, customer_id)
        if current is None:
            raise ApiError(401)
        if current["password_hash"] != stored:
            raise ValidationFailed.one("current_password", WRONG_CURRENT)  # changed meanwhile
        await queries.forget_failures(uow.conn, email_key)
        changed_at = await queries.change_password(uow.conn, customer_id, new_hash)
        # Every session ends: whoever knew the old password signs in again with the new one.
        await queries.revoke_sessions_of(uow.conn, customer_id)
        uow.emit(CustomerPasswordChanged(customer_id=customer_id, changed_at=changed_at))
    return _private(MessageResponse(message="Password changed"))


# ---------------------------------------------------------------------------------------------
# The address book (another customer's address is a 404, exactly as an unknown one)


def _country(country_id: str | None, country: str | None) -> str:
    """The address's country as ISO alpha-2, from `country_id` or else `country`; a 422 without."""
    if country_id is not None:
        found = COUNTRIES_BY_ID.get(country_id)
        if found is None:
            raise ValidationFailed.one("country_id", "The selected country id is invalid.")
        return found.alpha_2
    if country is not None:
        code = country_code(country)
        if code is None or code not in COUNTRIES_BY_CODE:
            raise ValidationFailed.one("country", "The selected country is invalid.")
        return code
    raise ValidationFailed.one("country_id", "The country id field is required.")


async def _lock_account(conn: asyncpg.Connection, customer_id: str) -> None:
    """The customer's row, locked: changes to one address book run one at a time, so that no
    two can both make an address the default."""
    if await queries.lock_customer(conn, customer_id) is None:
        raise ApiError(401)


async def _hand_over_default(conn: asyncpg.Connection, customer_id: str, saved: domain.BookEntry) -> None:
    book = [
        domain.BookEntry(row["id"], row["shipping"], row["billing"], row["is_default"])
        for row in await queries.addresses(conn, customer_id)
    ]
    await queries.clear_defaults(conn, customer_id, domain.defaults_to_clear(saved, book))


async def list_addresses(request: web.Request) -> web.Response:
    customer_id = require_customer(request)
    rows = await queries.addresses(_pool(request), customer_id)
    return model_response(AddressCollection(data=[address_view(row) for row in rows]))


async def create_address(request: web.Request) -> web.Response:
    customer_id = require_customer(request)
    body = await read_json(request, AddressIn)
    values: dict[str, Any] = body.model_dump(exclude={"country_id", "country", "default"}) | {
        "id": new_id(),
        "customer_id": customer_id,
        "country": _country(body.country_id, body.country),
        "is_default": body.default,
    }
    async with runtime.unit_of_work(request) as uow:
        await _lock_account(uow.conn, customer_id)
        if await queries.count_addresses(uow.conn, customer_id) >= domain.MAX_ADDRESSES:
            raise ApiError(422, f"An address book holds at most {domain.MAX_ADDRESSES} addresses")
        saved = domain.BookEntry(values["id"], body.shipping, body.billing, body.default)
        await _hand_over_default(uow.conn, customer_id, saved)
        row = await queries.insert_address(uow.conn, values)
    return model_response(AddressResponse(data=address_view(row)), status=201)


# Fields an address cannot be without: sent as null, they are a 422 (the others are cleared).
REQUIRED_FIELDS = frozenset(
    {"firstname", "lastname", "address", "city", "state", "postal_code", "country_id", "country"}
    | {"shipping", "billing", "default", "meta"}
)


async def update_address(request: web.Request) -> web.Response:
    customer_id = require_customer(request)
    address_id = path_id(request)
    body = await read_json(request, AddressUpdate)
    sent = body.model_dump(exclude_unset=True)
    nulls = sorted(name for name, value in sent.items() if value is None and name in REQUIRED_FIELDS)
    if nulls:
        raise ValidationFailed({name: [NOT_NULL] for name in nulls})
    changes = {name: value for name, value in sent.items() if name not in ("country_id", "country", "default")}
    if "country_id" in sent or "country" in sent:
        changes["country"] = _country(sent.get("country_id"), sent.get("country"))
    if "default" in sent:
        changes["is_default"] = sent["default"]
    async with runtime.unit_of_work(request) as uow:
        await _lock_account(uow.conn, customer_id)
        current = await queries.lock_address(uow.conn, address_id, customer_id)
        if current is None:
            raise NotFound()
        saved = domain.BookEntry(
            address_id,
            changes.get("shipping", current["shipping"]),
            changes.get("billing", current["billing"]),
            changes.get("is_default", current["is_default"]),
        )
        await _hand_over_default(uow.conn, customer_id, saved)
        row = await queries.update_address(uow.conn, address_id, customer_id, changes) if changes else current
    return model_response(AddressResponse(data=address_view(row)))


async def delete_address(request: web.Request) -> web.Response:
    customer_id = require_customer(request)
    address_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        if not await queries.delete_address(uow.conn, address_id, customer_id):
            raise NotFound()
    return web.Response(status=204)
