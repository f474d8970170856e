"""Pure rules of settling a charge attempt: what a provider's result makes of it, the captured
amount check, the provider timeout, and the settings that bound reconciliation."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from payments import domain
from payments.providers import OfflineProvider, ProviderError, answer
from payments.settings import PaymentsSettings
from shared.errors import UNAVAILABLE

ASKED = (1000, "GBP")


@pytest.mark.parametrize(
    ("success", "message", "captured", "order_paid", "expected"),
    [
        # the provider has no charge for the key: it never got the request
        (None, None, None, False, ("declined", domain.NOT_CHARGED, False)),
        (None, None, None, True, ("declined", domain.ALREADY_PAID, False)),  # another attempt paid the order
        (False, "Do Not Honor", ASKED, True, ("declined", domain.ALREADY_PAID, False)),
        (False, "Do Not Honor", ASKED, False, ("declined", "Do Not Honor", False)),
        (True, None, ASKED, False, ("captured", None, False)),
        (True, None, (1000, "gbp"), False, ("captured", None, False)),  # some processors write it in lower case
        (True, None, None, False, ("captured", None, False)),  # a provider that moves no money: nothing to compare
        (True, None, ASKED, True, ("voided", domain.ALREADY_PAID, True)),  # another attempt paid the order
        (True, None, (1001, "GBP"), True, ("voided", domain.ALREADY_PAID, True)),
        (
            True,
            None,
            (1001, "GBP"),
            False,
            ("voided", "The payment provider captured 10.01 GBP instead of 10.00 GBP; the capture was voided", True),
        ),
        (
            True,
            None,
            (1000, "EUR"),
            False,
            ("voided", "The payment provider captured 10.00 EUR instead of 10.00 GBP; the capture was voided", True),
        ),
        (True, None, (None, None), False, ("voided", domain.NO_CAPTURED_AMOUNT, True)),
        (True, None, (1000, None), False, ("voided", domain.NO_CAPTURED_AMOUNT, True)),
    ],
)
def test_settle(success, message, captured, order_paid, expected):
    outcome = domain.settle(success, message, expected=ASKED, captured=captured, order_paid=order_paid)
    assert (outcome.status, outcome.message, outcome.void) == expected


def test_capture_mismatch_names_both_amounts_in_major_units_of_their_currency():
    assert domain.capture_mismatch((1000, "JPY"), (1000, "JPY")) is None
    assert domain.capture_mismatch((1000, "JPY"), (999, "JPY")) == (
        "The payment provider captured 999 JPY instead of 1000 JPY; the capture was voided"
    )


class Silent(OfflineProvider):
    """A provider that never answers."""

    async def lookup(self, idempotency_key: str):
        await asyncio.sleep(60)


async def test_a_provider_call_past_its_timeout_is_unavailable_and_says_so_without_the_request():
    provider = Silent("shop", timeout=0.05)
    with pytest.raises(ProviderError) as exc:
        await answer(provider, provider.lookup("attempt-key"))
    assert str(exc.value) == "Offline did not answer within 0.05 s"
    # The bus retries it for as long as it lasts and never parks it; an HTTP request answers 503.
    assert isinstance(exc.value, UNAVAILABLE)


async def test_an_answer_within_the_timeout_is_passed_on():
    provider = OfflineProvider("shop", timeout=1)
    result = await answer(provider, provider.charge(1234, "GBP", None, idempotency_key="k1"))
    assert (result.success, result.amount, result.currency) == (True, 1234, "GBP")


def test_reconciliation_waits_well_past_any_provider_call(infra):
    settings = infra.settings(PaymentsSettings)
    assert settings.reconcile_after > 2 * settings.provider_timeout
    with pytest.raises(ValidationError, match="reconcile_after"):
        infra.settings(PaymentsSettings, provider_timeout=30, reconcile_after=60)
