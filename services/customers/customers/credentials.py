"""What proves who a customer is: password hashes (argon2id) and the tokens a sign-in issues."""

from __future__ import annotations

import asyncio
import secrets

import jwt
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.identity import CUSTOMER_TOKEN_AUDIENCE, CUSTOMER_TOKEN_ISSUER


class Passwords:
    """argon2id at the settings' cost, computed in worker threads so that the event loop keeps
    serving, and at most `concurrency` at a time so that a burst of sign-ins cannot take all the
    memory."""

    def __init__(self, *, memory_kib: int, time_cost: int, concurrency: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        self._slots = asyncio.Semaphore(concurrency)
        self._decoy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` is the one `stored` was made from. `stored` is None for an email no
        account has: the check still runs, against a decoy, so that an unknown email takes as long
        to refuse as a wrong password and the timing tells nobody which accounts exist."""
        if stored is None:
            if self._decoy is None:
                self._decoy = await self.hash(secrets.token_urlsafe(32))
            stored = self._decoy
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, stored, password)
            except (VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, stored: str) -> bool:
        """The hash was made at another cost than today's: store a new one at sign-in."""
        return self._hasher.check_needs_rehash(stored)


PASSWORDS = web.AppKey("passwords", Passwords)


def access_token(secret: str, customer_id: str, issued_at: int, ttl: int) -> str:
    """The short-lived bearer token the gateway accepts for the customer (`gateway.auth`)."""
    claims = {
        "iss": CUSTOMER_TOKEN_ISSUER,
        "aud": CUSTOMER_TOKEN_AUDIENCE,
        "sub": customer_id,
        "iat": issued_at,
        "exp": issued_at + ttl,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def new_refresh_token() -> str:
    """256 random bits, opaque: only their digest is stored (`domain.refresh_token_hash`)."""
    return secrets.token_urlsafe(32)
