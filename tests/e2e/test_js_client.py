"""GetCandy's own published JavaScript client drives the storefront lifecycle through the gateway.

`tests/clients/lifecycle.test.js`, run by node's own test runner (`node --test`), drives
`@getcandy/js-client` 0.12.1, exactly as published on npm (axios underneath), against the session's
stack: browse, a basket of two lines switched to euros, a coupon, order, addresses, contact,
shipping in euros, payment with the sandbox nonce, the placed order and its invoice, a signed-in
customer, and the storefront calls around them. It checks every answer against the client's own
typings and what a storefront reads; its first failing step fails the run (the later ones are
skipped), and when every step passed it writes a JSON summary of what ran to SUMMARY_FILE
(tests/clients/README.md).

`npm ci` runs once per lock file: a stamp in node_modules holds the hash of the lock it installed.
Without node and npm the tests are skipped (`.ci/run` installs them where they are missing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from tests.support import Stack

# npm ci (the first time) and the session's stack (when these run first) come before the checkout.
pytestmark = pytest.mark.timeout(300)

CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients"
STAMP = CLIENT_DIR / "node_modules" / ".installed-lock-sha256"

# The documented checkout (API.md: browse to the placed order), by the client's method names.
CHECKOUT = {
    "getProductsProductId",
    "postBaskets",
    "postOrders",
    "putOrdersIdShippingAddress",
    "putOrdersOrderIdBillingAddress",
    "putOrdersIdContact",
    "getOrdersIdShippingMethods",
    "putOrdersIdShippingCost",
    "getPaymentsProvider",
    "postOrdersProcess",
    "getOrdersOrderId",
}
# The storefront calls around it that the client has a method for and the gateway serves.
AROUND_CHECKOUT = {
    "getCurrencies",
    "getProducts",
    "getProductsVariantsProductVariantId",
    "getBasketsBasketId",
    "postBasketLines",
    "putBasketLinesBasketLineId",
    "putBasketLinesBasketLineIdAdd",
    "putBasketLinesBasketLineIdRemove",
    "deleteBasketLines",
    "postBasketsBasketIdMeta",
    "putBasketsBasketId",
    "deleteBasketsBasketIdDiscounts",
    "deleteBasketsBasketId",
    "getCountries",
    "getCountriesCountryId",
    "getPaymentProvider",
    "getPaymentsTypes",
    "getOrdersTypes",
    "getOrdersIdInvoice",
}
# A signed-in customer's checkout with the calls the client has (the token in baseOptions.headers).
SIGNED_IN = {"postBasketsBasketIdClaim", "getBasketsCurrent", "postBasketsResolve", "getOrders"}
# The answers the script asks to be refused: a deleted basket, a second order from a used one, and
# a signed-in customer's order to a guest.
REFUSED = [("getBasketsBasketId", 404), ("postOrders", 403), ("getOrdersOrderId", 404)]


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the locked packages installed in tests/clients/node_modules."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: GetCandy's JavaScript client (tests/clients) needs them")
    lock = hashlib.sha256((CLIENT_DIR / "package-lock.json").read_bytes()).hexdigest()
    # The stamp's hash is the lock's that was installed: written below, or by .ci/run (with a newline).
    if not STAMP.is_file() or STAMP.read_text().strip() != lock:
        # --ignore-scripts: nothing from the registry runs while installing.
        installed = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=CLIENT_DIR,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stderr[-3000:]}"
        STAMP.write_text(lock)
    return node


async def run_client(
    node: str, gateway: str, admin_token: str, summary_file: Path
) -> tuple[int, str, dict[str, Any] | None]:
    """`node --test` in tests/clients: its exit code, its report and the summary (None: not written)."""
    dropped = {"ADMIN_TOKEN", "SUMMARY_FILE", "FORCE_COLOR"}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env |= {"GATEWAY_URL": gateway, "ADMIN_TOKEN": admin_token, "SUMMARY_FILE": str(summary_file), "NO_COLOR": "1"}
    # The spec reporter, uncoloured: the failing step's message in plain text, whatever node's default.
    process = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-reporter=spec",
        "lifecycle.test.js",
        cwd=CLIENT_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return process.returncode, output.decode(), await asyncio.to_thread(read_summary, summary_file)


def read_summary(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


async def test_the_published_getcandy_client_places_an_order_through_the_gateway(
    stack: Stack, node: str, session, tmp_path: Path
) -> None:
    code, output, summary = await run_client(node, stack.gateway, mint_token(GatewaySettings()), tmp_path / "s.json")

    assert code == 0 and summary is not None, f"node --test exited {code}:\n{output[-6000:]}"
    assert summary["client"] == "@getcandy/js-client@0.12.1"
    assert CHECKOUT | AROUND_CHECKOUT | SIGNED_IN <= set(summary["client_methods_used"])
    refused = [(call["method"], call["status"]) for call in summary["calls"] if call["status"] >= 300]
    assert refused == REFUSED
    assert all(call["route"] for call in summary["calls"])
    # The one storefront call the client has no method for: applying the coupon (twice).
    direct = [call["route"] for call in summary["calls"] if call["method"] is None]
    assert direct == ["POST /baskets/{id}/discounts"] * 2
    # Only the two documented differences from the client's typings (README.md).
    assert set(summary["known_differences"]) <= {"ProductVariant.tax", "Address.country"}
    assert summary["put_basket_without_body"]["status"] == 200
    # The demo data's base and euros, as GET /currencies listed them to the client (other tests of
    # the session may add currencies).
    assert (summary["currencies"]["GBP"], summary["currencies"]["EUR"]) == ("1", "1.165")

    # The order the client placed, read back by us: placed in euros at the listed rate, paid once,
    # the amount the client saw.
    order = summary["order"]
    assert (order["status"], order["currency"], order["conversion"]) == ("payment-received", "EUR", "1.165")
    assert order["captured"] == order["order_total"]
    url = f"{stack.gateway}/orders/{order['id']}?include=transactions,lines"
    async with session.get(url) as response:
        assert response.status == 200
        placed = (await response.json())["data"]
    assert placed["status"] == "payment-received" and placed["placed_at"] is not None
    assert (placed["currency"], placed["conversion"]) == ("EUR", "1.165")
    assert placed["reference"] == order["reference"] and placed["order_total"] == order["order_total"]
    assert (placed["discount_total"], placed["delivery_total"]) == (order["discount_total"], order["delivery_total"])
    # 12.50 and 19.99 GBP at 1.165, half up: 14.56 and 23.29 EUR; 5.00 GBP off is 5.83 EUR off.
    lines = [line for line in placed["lines"]["data"] if not line["is_shipping"]]
    goods = sorted((line["quantity"], line["unit_price"]) for line in lines)
    assert goods == [(1, 2329), (3, 1456)] and placed["discount_total"] == 583
    captured = [t for t in placed["transactions"]["data"] if t["success"] and not t["refund"]]
    assert [(t["amount"], t["currency"]) for t in captured] == [(order["order_total"], "EUR")]
    # The signed-in customer's order: theirs alone, and the first of their order history.
    signed_in = summary["signed_in"]
    assert signed_in["orders_listed"] == 1
    async with session.get(f"{stack.gateway}/orders/{signed_in['order_id']}") as response:
        assert response.status == 404


async def test_the_run_stops_at_the_first_call_the_gateway_refuses(stack: Stack, node: str, tmp_path: Path) -> None:
    # The same gateway under a path it does not serve: the first call (getCurrencies) is a 404.
    wrong_base = stack.gateway.removesuffix("/api/v1") + "/api/v0"

    code, output, summary = await run_client(node, wrong_base, mint_token(GatewaySettings()), tmp_path / "s.json")

    assert code == 1 and summary is None
    assert "Mismatch: getCurrencies (GET /currencies) answered HTTP 404" in output, output
    # Every later step is reported as not run, none as failed.
    assert output.count('not run: the step "the currencies a storefront offers (getCurrencies)" failed') == 11, output
    counts = dict(re.findall(r"^(?:\S+ )?(pass|fail|skipped) (\d+)$", output, re.MULTILINE))
    assert counts == {"pass": "0", "fail": "1", "skipped": "11"}, output
