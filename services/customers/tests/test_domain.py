"""The customers service's pure rules: passwords, the sign-in throttle, refresh token reuse, the
address book's defaults and countries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from customers import domain
from customers.domain import BookEntry, ThrottlePolicy
from shared.countries import country_code

NOW = datetime(2024, 5, 14, 10, 0, tzinfo=UTC)
POLICY = ThrottlePolicy(free=3, lockout_after=6, first_delay=1.0, max_delay=4.0, lockout=300.0, window=900.0)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# --- passwords


@pytest.mark.parametrize(
    ("candidate", "email", "problems"),
    [
        ("correct horse battery", None, 0),
        ("8 chars!", None, 0),
        ("7 chars", None, 1),
        ("x" * 256, None, 0),
        ("x" * 257, None, 1),
        ("Password123", None, 1),  # whatever its case
        ("12345678", None, 1),
        ("Ada@Example.com", "ada@example.com", 1),
        ("", None, 1),
    ],
)
def test_password_rules(candidate, email, problems):
    assert len(domain.password_problems(candidate, email)) == problems


def test_every_common_password_is_long_enough_to_need_the_list():
    # Shorter ones are refused by length already: the list only earns its keep at 8 and over.
    assert all(len(common) >= domain.MIN_PASSWORD_CHARS for common in domain.COMMON_PASSWORDS)


# --- the throttle


@pytest.mark.parametrize(
    ("failures", "seconds_ago", "wait"),
    [
        (0, None, 0.0),
        (2, 0.0, 0.0),  # within the free ones
        (3, 0.0, 1.0),  # the first that costs: 1 s
        (3, 0.4, 0.6),
        (3, 1.0, 0.0),
        (4, 0.0, 2.0),  # doubling
        (5, 0.0, 4.0),
        (5, 3.0, 1.0),
        (6, 0.0, 300.0),  # locked out
        (6, 299.0, 1.0),
        (6, 300.0, 0.0),
        (40, 10.0, 290.0),  # every failure past the lockout locks again, from its own time
        (6, 900.0, 0.0),  # the window passed: forgotten
    ],
)
def test_throttle_wait(failures, seconds_ago, wait):
    last = None if seconds_ago is None else ago(seconds_ago)
    assert domain.throttle_wait(POLICY, failures, last, NOW) == pytest.approx(wait)


def test_delays_are_capped_below_the_lockout():
    policy = ThrottlePolicy(free=1, lockout_after=50, first_delay=1.0, max_delay=60.0, lockout=900.0, window=3600.0)
    assert domain.throttle_wait(policy, 49, NOW, NOW) == 60.0


def test_failures_start_over_after_a_quiet_window():
    assert domain.failures_after_one_more(POLICY, 5, ago(10), NOW) == 6
    assert domain.failures_after_one_more(POLICY, 5, ago(900), NOW) == 1
    assert domain.failures_after_one_more(POLICY, 0, None, NOW) == 1


def test_a_guesser_is_slowed_then_refused():
    """A burst of guesses at one account, each as soon as allowed: the free ones at once, then
    waits that double, then a lockout, then one guess per lockout."""
    failures, last, clock, waits = 0, None, NOW, []
    for _ in range(9):
        wait = domain.throttle_wait(POLICY, failures, last, clock)
        waits.append(wait)
        clock += timedelta(seconds=wait)
        failures, last = domain.failures_after_one_more(POLICY, failures, last, clock), clock
    assert waits == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 300.0, 300.0, 300.0]


def test_the_policies_keep_their_lockout_within_their_window():
    for policy in (domain.EMAIL_POLICY, domain.CLIENT_POLICY):
        assert policy.free < policy.lockout_after
        assert policy.max_delay <= policy.lockout < policy.window


def test_throttle_keys_ignore_the_case_of_an_email_and_keep_nothing_in_clear():
    key = domain.throttle_key("email", " Ada@Example.com ")
    assert key == domain.throttle_key("email", "ada@example.com")
    assert key != domain.throttle_key("client", "ada@example.com")
    assert b"ada" not in key and len(key) == 32


# --- refresh tokens


@pytest.mark.parametrize(
    ("used_seconds_ago", "verdict"),
    [(None, "rotate"), (0.0, "retry"), (10.0, "retry"), (10.5, "reused"), (86400.0, "reused")],
)
def test_refresh_verdict(used_seconds_ago, verdict):
    used_at = None if used_seconds_ago is None else ago(used_seconds_ago)
    assert domain.refresh_verdict(used_at, NOW, grace=10.0) == verdict


def test_no_grace_makes_any_second_use_a_reuse():
    assert domain.refresh_verdict(NOW, NOW + timedelta(microseconds=1), grace=0.0) == "reused"


def test_refresh_tokens_are_stored_as_digests():
    digest = domain.refresh_token_hash("a-token")
    assert digest == domain.refresh_token_hash("a-token") != domain.refresh_token_hash("a-tokeN")
    assert len(digest) == 32


# --- the address book


def entry(id_: str, shipping: bool, billing: bool, default: bool) -> BookEntry:
    return BookEntry(id_, shipping, billing, default)


BOOK = [
    entry("ship", True, False, True),
    entry("bill", False, True, True),
    entry("both", True, True, False),
    entry("none", False, False, True),
]


@pytest.mark.parametrize(
    ("saved", "cleared"),
    [
        (entry("new", True, False, True), ["ship"]),
        (entry("new", False, True, True), ["bill"]),
        (entry("new", True, True, True), ["ship", "bill"]),
        (entry("new", True, True, False), []),  # not a default: takes nobody's place
        (entry("new", False, False, True), []),  # a default of no kind
        (entry("ship", True, False, True), []),  # saved again: itself stays
        (entry("both", True, True, True), ["ship", "bill"]),
    ],
)
def test_a_new_default_takes_the_place_of_the_one_of_its_kind(saved, cleared):
    assert domain.defaults_to_clear(saved, BOOK) == cleared


# --- countries


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("United Kingdom", "GB"),
        ("gb", "GB"),
        ("GBR", "GB"),
        ("UK", "GB"),
        ("France", "FR"),
        ("Atlantis", None),
        ("", None),
    ],
)
def test_country_codes(value, code):
    assert country_code(value) == code
