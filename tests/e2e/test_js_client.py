"""GetCandy's own published JavaScript client drives the documented checkout through the gateway.

`tests/clients/checkout.js` runs `@getcandy/js-client` 0.12.1, exactly as published on npm (axios
underneath), against the session's stack: browse, basket, order, addresses, contact, shipping,
payment with the sandbox nonce, the placed order, and the storefront calls around them. It checks
every answer against the client's own typings and what a storefront reads, exits non-zero on the
first mismatch and prints a JSON summary of what ran (tests/clients/README.md).

`npm ci` runs once per lock file: a stamp in node_modules holds the hash of the lock it installed.
Without node and npm the tests are skipped (`.ci/run` installs them where they are missing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
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
    if not STAMP.is_file() or STAMP.read_text() != lock:
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


async def run_client(node: str, gateway: str, admin_token: str | None = None) -> tuple[int, str, str]:
    env = {name: value for name, value in os.environ.items() if name != "ADMIN_TOKEN"}
    env["GATEWAY_URL"] = gateway
    if admin_token:
        env["ADMIN_TOKEN"] = admin_token
    process = await asyncio.create_subprocess_exec(
        node,
        "checkout.js",
        cwd=CLIENT_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_published_getcandy_client_places_an_order_through_the_gateway(
    stack: Stack, node: str, session
) -> None:
    code, stdout, stderr = await run_client(node, stack.gateway, mint_token(GatewaySettings()))

    assert code == 0, f"checkout.js exited {code}:\n{stderr}"
    summary: dict[str, Any] = json.loads(stdout)
    assert summary["client"] == "@getcandy/js-client@0.12.1"
    assert CHECKOUT | AROUND_CHECKOUT | SIGNED_IN <= set(summary["client_methods_used"])
    refused = [(call["method"], call["status"]) for call in summary["calls"] if call["status"] >= 300]
    assert refused == REFUSED
    assert all(call["route"] for call in summary["calls"])
    # Only the two documented differences from the client's typings (README.md).
    assert set(summary["known_differences"]) <= {"ProductVariant.tax", "Address.country"}
    assert summary["put_basket_without_body"]["status"] == 200

    # The order the client placed, read back by us: placed, paid once, the amount the client saw.
    order = summary["order"]
    assert order["status"] == "payment-received"
    url = f"{stack.gateway}/orders/{order['id']}?include=transactions"
    async with session.get(url) as response:
        assert response.status == 200
        placed = (await response.json())["data"]
    assert placed["status"] == "payment-received" and placed["placed_at"] is not None
    assert placed["reference"] == order["reference"] and placed["order_total"] == order["order_total"]
    captured = [t for t in placed["transactions"]["data"] if t["success"] and not t["refund"]]
    assert [t["amount"] for t in captured] == [order["order_total"]]
    # The signed-in customer's order: theirs alone, and the first of their order history.
    signed_in = summary["signed_in"]
    assert signed_in["orders_listed"] == 1
    async with session.get(f"{stack.gateway}/orders/{signed_in['order_id']}") as response:
        assert response.status == 404


async def test_the_script_stops_at_the_first_call_the_gateway_refuses(stack: Stack, node: str) -> None:
    # The same gateway under a path it does not serve: the first call (getProducts) is a 404.
    wrong_base = stack.gateway.removesuffix("/api/v1") + "/api/v0"

    code, stdout, stderr = await run_client(node, wrong_base)

    assert code == 1 and stdout == ""
    assert stderr.startswith("MISMATCH: getProducts (GET /products) answered HTTP 404"), stderr
