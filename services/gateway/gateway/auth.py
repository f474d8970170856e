"""Admin credentials: a bearer JWT (HS256) with the role claim `admin`, verified here only; the
services get the verified identity signed (`shared.identity`)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from aiohttp import web

from gateway.settings import GatewaySettings
from shared.http import ApiError
from shared.identity import signed_identity_headers


def verify_admin(request: web.Request, settings: GatewaySettings) -> dict[str, Any]:
    """Missing or bad token: 401; a valid token without the admin role: 403."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, headers={"WWW-Authenticate": 'Bearer realm="admin"'})
    required = ["exp", "iat", "sub"]
    if settings.environment == "production":
        # Production refuses to start without both settings; tokens must carry both claims.
        required += ["iss", "aud"]
    try:
        claims = jwt.decode(
            token.strip(),
            settings.admin_jwt_secret,
            algorithms=["HS256"],
            issuer=settings.admin_jwt_issuer,
            audience=settings.admin_jwt_audience,
            leeway=settings.admin_jwt_leeway,
            options={"require": required, "verify_aud": settings.admin_jwt_audience is not None},
        )
        _check_lifetime(claims, settings)
    except jwt.PyJWTError as exc:
        raise ApiError(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from exc
    roles = _roles(claims)
    if "admin" not in roles:
        raise ApiError(403)
    return {"sub": str(claims["sub"]), "roles": roles}


def _check_lifetime(claims: dict[str, Any], settings: GatewaySettings) -> None:
    """`exp - iat` at most `admin_jwt_max_lifetime`: a stolen long-lived token is not an admin
    forever. (PyJWT has checked both are integers and `iat` is not in the future.)"""
    if int(claims["exp"]) - int(claims["iat"]) > settings.admin_jwt_max_lifetime:
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
