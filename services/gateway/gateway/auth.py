"""Credentials, verified here only; the services get the verified identity signed
(`shared.identity`).

- Admin operations: a bearer JWT (HS256, `admin_jwt_secret`) with the role claim `admin`.
- A signed-in customer's operations: the access token the customers service issued at
  `POST /oauth/token` (HS256, `customer_token_secret`, its own issuer and audience), passed on as
  `{"sub": <customer id>, "roles": ["customer"]}`. Each kind of token has its own key, so that
  neither can pass for the other.
- A guest's operation that also serves a signed-in customer (`customer="optional"`): no credential
  is a guest; a credential must be a valid access token (passed on as above) or admin token.
- An operation of both (`admin` and `customer`: `GET /orders`): a customer's access token or an
  admin's token, each passed on as its own identity.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from aiohttp import web

from gateway.routes import Route
from gateway.settings import GatewaySettings
from shared.http import ApiError, is_id
from shared.identity import CUSTOMER_ROLE, CUSTOMER_TOKEN_AUDIENCE, CUSTOMER_TOKEN_ISSUER, signed_identity_headers
from shared.operations import OPTIONAL

# Clock skew allowed between the customers service, which issues the tokens, and the gateway.
CUSTOMER_TOKEN_LEEWAY = 5
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _bearer(request: web.Request, realm: str) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
    return token.strip()


def verify_admin(request: web.Request, settings: GatewaySettings) -> dict[str, Any]:
    """Missing or bad token: 401; a valid token without the admin role: 403."""
    token = _bearer(request, "admin")
    required = ["exp", "iat", "sub"]
    if settings.environment == "production":
        # Production refuses to start without both settings; tokens must carry both claims.
        required += ["iss", "aud"]
    try:
        claims = jwt.decode(
            token,
            settings.admin_jwt_secret,
            algorithms=["HS256"],
            issuer=settings.admin_jwt_issuer,
            audience=settings.admin_jwt_audience,
            leeway=settings.admin_jwt_leeway,
            options={"require": required, "verify_aud": settings.admin_jwt_audience is not None},
        )
        _check_lifetime(claims, settings.admin_jwt_max_lifetime)
    except jwt.PyJWTError as exc:
        raise ApiError(401, headers=INVALID_TOKEN) from exc
    roles = _roles(claims)
    if "admin" not in roles:
        raise ApiError(403)
    return {"sub": str(claims["sub"]), "roles": roles}


def verify_customer(request: web.Request, settings: GatewaySettings) -> dict[str, Any]:
    """Missing or bad access token (expired, another key, issuer or audience, living longer than
    allowed, a subject that is not an id): 401, and the client refreshes or signs in again."""
    token = _bearer(request, "customer")
    try:
        claims = jwt.decode(
            token,
            settings.customer_token_secret,
            algorithms=["HS256"],
            issuer=CUSTOMER_TOKEN_ISSUER,
            audience=CUSTOMER_TOKEN_AUDIENCE,
            leeway=CUSTOMER_TOKEN_LEEWAY,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
        _check_lifetime(claims, settings.customer_token_max_lifetime)
        if not isinstance(claims["sub"], str) or not is_id(claims["sub"]):
            raise jwt.InvalidTokenError("The subject is not a customer id")
    except jwt.PyJWTError as exc:
        raise ApiError(401, headers=INVALID_TOKEN) from exc
    return {"sub": claims["sub"], "roles": [CUSTOMER_ROLE]}


def verify_optional_customer(request: web.Request, settings: GatewaySettings) -> dict[str, Any] | None:
    """No `Authorization` header: a guest (None). Any credential is verified, a 401 when it is not a
    valid token: a storefront whose token expired refreshes it, rather than being served as a guest
    who no longer sees the customer's basket. An admin's token (a back office sends it on every
    call) is passed on as the admin, whom these operations serve as a guest."""
    if "Authorization" not in request.headers:
        return None
    return verify_admin_or_customer(request, settings)


def verify_admin_or_customer(request: web.Request, settings: GatewaySettings) -> dict[str, Any]:
    """A customer's access token, else an admin's token (401 or 403 as for an admin operation)."""
    try:
        return verify_customer(request, settings)
    except ApiError:
        return verify_admin(request, settings)


def caller(route: Route, request: web.Request, settings: GatewaySettings) -> dict[str, Any] | None:
    """The identity the route's operation takes, verified; None for a guest."""
    if route.admin:
        return verify_admin_or_customer(request, settings) if route.customer else verify_admin(request, settings)
    if route.customer == OPTIONAL:
        return verify_optional_customer(request, settings)
    if route.customer:
        return verify_customer(request, settings)
    return None


def _check_lifetime(claims: dict[str, Any], max_lifetime: int) -> None:
    """`exp - iat` at most `max_lifetime`: a stolen long-lived token does not work for ever.
    (PyJWT has checked both are integers and `iat` is not in the future.)"""
    if int(claims["exp"]) - int(claims["iat"]) > max_lifetime:
        raise jwt.InvalidTokenError("The token lives longer than allowed")


def _roles(claims: dict[str, Any]) -> list[str]:
    raw = claims.get("roles", claims.get("role", []))
    if isinstance(raw, str):
        return [raw]
    return [str(r) for r in raw] if isinstance(raw, list) else []


def identity_header(identity: dict[str, Any], settings: GatewaySettings) -> dict[str, str]:
    """The verified identity and its signature, for the service (shared.identity)."""
    return signed_identity_headers(identity, settings.identity_signing_key)


def mint_token(
    settings: GatewaySettings, subject: str = "admin", roles: tuple[str, ...] = ("admin",), ttl: int = 3600
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "roles": list(roles), "iat": now, "exp": now + ttl}
    if settings.admin_jwt_issuer:
        claims["iss"] = settings.admin_jwt_issuer
    if settings.admin_jwt_audience:
        claims["aud"] = settings.admin_jwt_audience
    return jwt.encode(claims, settings.admin_jwt_secret, algorithm="HS256")
