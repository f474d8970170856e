"""The customers service's rules, pure: passwords, the sign-in throttle, refresh token reuse, the
address book's defaults and countries. Unit-tested without I/O (`tests/test_domain.py`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# ---------------------------------------------------------------------------------------------
# Passwords

MIN_PASSWORD_CHARS = 8
# Bounded, so that no request makes the service hash megabytes; a passphrase fits easily.
MAX_PASSWORD_CHARS = 256
# The passwords every list of leaked ones starts with (NIST SP 800-63B 5.1.1.2: refuse the
# commonly used), at the minimum length and over.
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "passw0rd",
        "12345678",
        "123456789",
        "1234567890",
        "87654321",
        "11111111",
        "00000000",
        "qwertyui",
        "qwertyuiop",
        "qwerty123",
        "1q2w3e4r",
        "1qaz2wsx",
        "abc12345",
        "abcd1234",
        "iloveyou",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome1",
        "letmein1",
        "trustno1",
        "superman",
        "starwars",
    }
)


def password_problems(password: str, email: str | None = None) -> list[str]:
    """Why a new password is refused (messages for the 422), or nothing. Length and the common
    ones only: NIST SP 800-63B advises against rules of composition."""
    problems = []
    if len(password) < MIN_PASSWORD_CHARS:
        problems.append(f"The password must be at least {MIN_PASSWORD_CHARS} characters.")
    if len(password) > MAX_PASSWORD_CHARS:
        problems.append(f"The password may not be greater than {MAX_PASSWORD_CHARS} characters.")
    if password.casefold() in COMMON_PASSWORDS or (email is not None and password.casefold() == email.casefold()):
        problems.append("This password is too easy to guess: choose another one.")
    return problems


def display_name(firstname: str, lastname: str) -> str:
    """A user's `name`, as upstream made it from the two."""
    return f"{firstname} {lastname}"


# ---------------------------------------------------------------------------------------------
# The sign-in throttle


@dataclass(frozen=True)
class ThrottlePolicy:
    """How failed password checks for one key (an email, a client address) slow it down: the
    first `free` failures cost nothing; each one after that makes the next attempt wait
    `first_delay` seconds, doubling up to `max_delay`; `lockout_after` failures lock the key for
    `lockout` seconds (and each further failure again). A key without a failure for `window`
    seconds starts over."""

    free: int
    lockout_after: int
    first_delay: float
    max_delay: float
    lockout: float
    window: float


# One account: a handful of typos are free, ten wrong guesses lock it for a quarter of an hour,
# and past that an attacker gets one guess per quarter of an hour until an hour goes by quietly.
EMAIL_POLICY = ThrottlePolicy(free=5, lockout_after=10, first_delay=1.0, max_delay=60.0, lockout=900.0, window=3600.0)
# One client address: many people may share one (an office, a mobile carrier's NAT), so it allows
# more, and stops one address from trying many accounts.
CLIENT_POLICY = ThrottlePolicy(
    free=20, lockout_after=100, first_delay=1.0, max_delay=60.0, lockout=900.0, window=3600.0
)


def _recent(policy: ThrottlePolicy, last_failure_at: datetime | None, now: datetime) -> float | None:
    """Seconds since the last failure, or None when there is none within the window."""
    if last_failure_at is None:
        return None
    elapsed = (now - last_failure_at).total_seconds()
    return elapsed if elapsed < policy.window else None


def throttle_wait(policy: ThrottlePolicy, failures: int, last_failure_at: datetime | None, now: datetime) -> float:
    """Seconds the next attempt must wait (0: it may go ahead)."""
    elapsed = _recent(policy, last_failure_at, now)
    if elapsed is None or failures < policy.free:
        return 0.0
    if failures >= policy.lockout_after:
        hold = policy.lockout
    else:
        hold = min(policy.first_delay * 2 ** (failures - policy.free), policy.max_delay)
    return max(hold - elapsed, 0.0)


def failures_after_one_more(
    policy: ThrottlePolicy, failures: int, last_failure_at: datetime | None, now: datetime
) -> int:
    """The count once one more failure is recorded (a key quiet for its window starts over)."""
    return 1 if _recent(policy, last_failure_at, now) is None else failures + 1


def throttle_key(kind: Literal["email", "client"], value: str) -> bytes:
    """The stored key of an email or client address: a digest, so that the table keeps neither
    in clear (an email tried at sign-in need not belong to any customer)."""
    normalised = value.strip().casefold() if kind == "email" else value.strip()
    return hashlib.sha256(f"{kind}:{normalised}".encode()).digest()


# ---------------------------------------------------------------------------------------------
# Refresh tokens

RefreshVerdict = Literal["rotate", "retry", "reused"]


def refresh_verdict(used_at: datetime | None, now: datetime, grace: float) -> RefreshVerdict:
    """What presenting a refresh token means: its first use (`rotate`: a new pair, this one is
    spent), a retry within `grace` seconds of that use (`retry`: another new pair, from a client
    that lost the first answer or refreshed from two tabs at once), or a spent token presented
    again (`reused`: a copy in someone else's hands, so the session ends; OAuth 2.0 Security Best
    Current Practice, 4.14.2)."""
    if used_at is None:
        return "rotate"
    return "retry" if (now - used_at).total_seconds() <= grace else "reused"


def refresh_token_hash(token: str) -> bytes:
    """What is stored of a refresh token. A fast digest is enough: the token is 256 random bits,
    so there is nothing to guess; what matters is that the table holds no usable token."""
    return hashlib.sha256(token.encode()).digest()


# ---------------------------------------------------------------------------------------------
# The address book

# An address book is a list to pick from, not a store: bounded, so that no account grows without end.
MAX_ADDRESSES = 100


@dataclass(frozen=True)
class BookEntry:
    id: str
    shipping: bool
    billing: bool
    default: bool


def defaults_to_clear(saved: BookEntry, others: Iterable[BookEntry]) -> list[str]:
    """An address saved as the default for shipping (or billing) takes the place of the one that
    was: a customer has at most one default of each kind. The ids that lose their `default`."""
    if not saved.default:
        return []
    return [
        other.id
        for other in others
        if other.id != saved.id
        and other.default
        and ((saved.shipping and other.shipping) or (saved.billing and other.billing))
    ]
