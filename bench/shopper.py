"""A shopper: the documented storefront checkout through the gateway, timed per endpoint.

Used by the benchmark, the end-to-end tests and the fault suite. Only the public API is used,
exactly as a GetCandy frontend would.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.load import Latencies

UK_ADDRESS = {
    "firstname": "Ada",
    "lastname": "Lovelace",
    "address": "12 St James's Square",
    "city": "London",
    "county": "Greater London",
    "zip": "SW1Y 4JH",
    "country": "United Kingdom",
    "phone": "+44 20 7946 0000",
}


class CheckoutFailed(Exception):
    def __init__(self, step: str, status: int, body: Any):
        super().__init__(f"{step}: HTTP {status}: {str(body)[:300]}")
        self.step = step
        self.status = status
        self.body = body


@dataclass
class Outcome:
    order_id: str | None = None
    placed: bool = False
    status: str | None = None
    order_total: int | None = None
    lines: list[tuple[str, int]] = field(default_factory=list)  # (variant id, quantity)
    process_to_placed_ms: float | None = None
    error: str | None = None
    error_status: int | None = None


class Shopper:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateway: str,
        latencies: Latencies | None = None,
        *,
        timeout: float = 30.0,
        retry_for: float | None = None,
    ) -> None:
        self.session = session
        self.gateway = gateway.rstrip("/")
        self.latencies = latencies if latencies is not None else Latencies()
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # A careful frontend: every POST carries an Idempotency-Key, and a dropped connection or a
        # 502/503/504/409 is retried with the same key for up to `retry_for` seconds.
        self.retry_for = retry_for
        self.responses: list[tuple[str, int, Any]] = []  # every answer: (route, status, body)
        self.transport_errors: list[str] = []
        self.malformed_errors: list[tuple[str, int, Any]] = []  # 4xx/5xx not in the GetCandy shape

    async def call(
        self,
        method: str,
        path: str,
        route: str,
        *,
        json: Any = None,
        expect: tuple[int, ...] = (200, 201),
        headers: dict[str, str] | None = None,
    ) -> Any:
        headers = dict(headers or {})
        if method == "POST" and self.retry_for is not None:
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        give_up_at = time.perf_counter() + (self.retry_for or 0)
        while True:
            started = time.perf_counter()
            try:
                async with self.session.request(
                    method, self.gateway + path, json=json, timeout=self.timeout, headers=headers
                ) as response:
                    raw = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.transport_errors.append(f"{method} {route}: {type(exc).__name__}: {exc}")
                if self.retry_for is not None and time.perf_counter() < give_up_at:
                    await asyncio.sleep(0.25)
                    continue
                raise
            body = _json_or_text(raw)
            self.latencies.add(f"{method} {route}", (time.perf_counter() - started) * 1000)
            self.responses.append((f"{method} {route}", status, body))
            if status >= 400 and not _getcandy_error(status, body):
                self.malformed_errors.append((f"{method} {route}", status, body))
            retryable = status in (409, 502, 503, 504) or (status == 429)
            if retryable and self.retry_for is not None and time.perf_counter() < give_up_at:
                await asyncio.sleep(0.25)
                continue
            if status not in expect:
                self.latencies.errors[f"{method} {route}"] += 1
                raise CheckoutFailed(f"{method} {route}", status, body)
            return body

    async def catalogue(self) -> list[dict[str, Any]]:
        body = await self.call("GET", "/products?include=variants&per_page=50", "/products")
        return body["data"]

    async def prepare(self, variants: list[tuple[str, int]], *, browse_product: str | None = None) -> str:
        """Browse, basket, order, shipping address and price, contact, billing: ready to process."""
        if browse_product:
            await self.call("GET", f"/products/{browse_product}?include=variants", "/products/{id}")
        basket = await self.call(
            "POST",
            "/baskets",
            "/baskets",
            json={"variants": [{"id": v, "quantity": q} for v, q in variants]},
        )
        order = await self.call("POST", "/orders", "/orders", json={"basket_id": basket["data"]["id"]})
        order_id = order["data"]["id"]
        await self.call("PUT", f"/orders/{order_id}/shipping/address", "/orders/{id}/shipping/address", json=UK_ADDRESS)
        methods = await self.call("GET", f"/orders/{order_id}/shipping/methods", "/orders/{id}/shipping/methods")
        prices = methods["data"]
        if not prices:
            raise CheckoutFailed("GET /orders/{id}/shipping/methods", 200, "no shipping price applies")
        price = min(prices, key=lambda p: p["rate"])
        await self.call(
            "PUT", f"/orders/{order_id}/shipping/cost", "/orders/{id}/shipping/cost", json={"price_id": price["id"]}
        )
        await self.call(
            "PUT",
            f"/orders/{order_id}/contact",
            "/orders/{id}/contact",
            json={"email": f"shopper{random.randrange(10**9)}@example.com"},
        )
        await self.call("PUT", f"/orders/{order_id}/billing/address", "/orders/{id}/billing/address", json=UK_ADDRESS)
        await self.call("GET", "/payments/provider", "/payments/provider")
        return order_id

    async def process(
        self, order_id: str, *, payment_token: str | None = "fake-valid-nonce", payment_type: str | None = None
    ) -> dict[str, Any]:
        """Process and follow the order until placed or failed; the order's data at that point."""
        body: dict[str, Any] = {"order_id": order_id}
        if payment_token is not None:
            body["payment_token"] = payment_token
        if payment_type is not None:
            body["payment_type"] = payment_type
        try:
            result = await self.call("POST", "/orders/process", "/orders/process", json=body, expect=(200, 201, 202))
        except CheckoutFailed as exc:
            # A retry whose first try was cut off after the order was placed: look before giving up.
            if self.retry_for is None or exc.status != 422 or "already been processed" not in str(exc.body):
                raise
            return (await self.call("GET", f"/orders/{order_id}", "/orders/{id}"))["data"]
        data = result["data"]
        if data.get("placed_at") is None:
            data = await self.wait_for_outcome(order_id, deadline=max(30.0, self.retry_for or 0))
        return data

    async def checkout(
        self,
        variants: list[tuple[str, int]],
        *,
        payment_token: str | None = "fake-valid-nonce",
        payment_type: str | None = None,
        browse_product: str | None = None,
    ) -> Outcome:
        """The whole documented flow until placed; failures are reported in the outcome."""
        outcome = Outcome(lines=list(variants))
        try:
            outcome.order_id = await self.prepare(variants, browse_product=browse_product)
            started = time.perf_counter()
            data = await self.process(outcome.order_id, payment_token=payment_token, payment_type=payment_type)
            outcome.process_to_placed_ms = (time.perf_counter() - started) * 1000
            outcome.placed = data.get("placed_at") is not None
            outcome.status = data.get("status")
            outcome.order_total = data.get("order_total")
        except CheckoutFailed as exc:
            outcome.error = str(exc)
            outcome.error_status = exc.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.error_status = 599
        return outcome

    async def wait_for_outcome(self, order_id: str, deadline: float = 30.0) -> dict[str, Any]:
        stop_at = time.perf_counter() + deadline
        while True:
            body = await self.call("GET", f"/orders/{order_id}", "/orders/{id}")
            data = body["data"]
            if data.get("placed_at") is not None or data.get("status") == "failed":
                return data
            if time.perf_counter() > stop_at:
                return data
            await asyncio.sleep(0.05)


def _json_or_text(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


def _getcandy_error(status: int, body: Any) -> bool:
    """`{"error": {"http_code", "message"}}`, or for 422 the flat `{"field": ["message"]}` map."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return error.get("http_code") == status and isinstance(error.get("message"), str)
    if status == 422 and isinstance(body, dict) and body:
        return all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body.values())
    return False


def pick_variants(products: list[dict[str, Any]], rng: random.Random, count: int) -> list[tuple[str, int]]:
    """2-3 purchasable variants from different products, in quantities their rules allow."""
    candidates = []
    for product in products:
        for variant in (product.get("variants") or {}).get("data", []):
            if variant.get("purchasable") is False:
                continue
            if variant.get("backorder") == "in-stock" and variant.get("inventory", 0) < 100:
                continue
            candidates.append(variant)
    chosen = rng.sample(candidates, min(count, len(candidates)))
    lines = []
    for variant in chosen:
        batch = max(1, int(variant.get("min_batch") or 1))
        minimum = max(1, int(variant.get("min_qty") or 1))
        quantity = max(batch, -(-minimum // batch) * batch)
        lines.append((variant["id"], quantity))
    return lines
