"""The identity the gateway passes to a service, signed so that a service trusts nothing else.

The gateway verifies the admin token, then sends the identity as JSON with an HMAC-SHA256 over
a timestamp and that JSON, keyed with `IDENTITY_SIGNING_KEY` (shared by the gateway and the
services, never by clients):

    X-Commerce-Identity: {"sub":"ops","roles":["admin"]}
    X-Commerce-Identity-Signature: t=1767225600,v1=<hex>

A service (`shared.http.identity`) accepts it only with a valid signature no older than
`MAX_AGE` seconds (`CLOCK_SKEW` seconds into the future at most): a header someone who can
reach the service sends is refused, and a captured one is worth a minute at most.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

IDENTITY_HEADER = "X-Commerce-Identity"
SIGNATURE_HEADER = "X-Commerce-Identity-Signature"
MAX_AGE = 60
CLOCK_SKEW = 5
# The key a service verifies with (set from its settings by the app factory).
SIGNING_KEY = web.AppKey("identity_signing_key", str)

# A signed-in customer: the customers service issues access tokens (HS256 JWTs keyed with
# `CUSTOMER_TOKEN_SECRET`, with this issuer and audience), the gateway verifies them on the
# operations declared `customer` and passes the identity `{"sub": <customer id>, "roles":
# ["customer"]}` on, signed like any other.
CUSTOMER_ROLE = "customer"
CUSTOMER_TOKEN_ISSUER = "commerce-customers"
CUSTOMER_TOKEN_AUDIENCE = "commerce-storefront"

_SIGNATURE = re.compile(r"t=(\d{1,12}),v1=([0-9a-f]{64})")


class IdentityError(Exception):
    """Unsigned, badly signed, stale or malformed: the caller is not who the header says."""


def _mac(key: str, timestamp: int, payload: str) -> str:
    return hmac.new(key.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()


def signed_identity_headers(identity: Mapping[str, Any], key: str, *, at: float | None = None) -> dict[str, str]:
    """The two headers that carry `identity` (the gateway's, and the tests' way to call a service
    directly); `at` is the signing time (default now)."""
    payload = orjson.dumps(dict(identity)).decode()
    timestamp = int(time.time() if at is None else at)
    return {IDENTITY_HEADER: payload, SIGNATURE_HEADER: f"t={timestamp},v1={_mac(key, timestamp, payload)}"}


def verify_identity(payload: str, signature: str, key: str, *, now: float | None = None) -> dict[str, Any]:
    """The identity in `payload` if `signature` proves the gateway sent it within `MAX_AGE`."""
    match = _SIGNATURE.fullmatch(signature.strip())
    if not key or match is None:
        raise IdentityError("unsigned")
    timestamp = int(match.group(1))
    # Constant time: the comparison must not tell an attacker how much of a guess is right.
    if not hmac.compare_digest(_mac(key, timestamp, payload), match.group(2)):
        raise IdentityError("bad signature")
    age = (time.time() if now is None else now) - timestamp
    if age > MAX_AGE or age < -CLOCK_SKEW:
        raise IdentityError("stale")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise IdentityError("not JSON") from exc
    if not isinstance(value, dict) or not isinstance(value.get("sub"), str):
        raise IdentityError("not an identity")
    roles = value.get("roles")
    # A list of strings only: a string would pass a substring test ("nonadmin" holds "admin").
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise IdentityError("roles must be a list of strings")
    return value
