"""The public API surface: every route the gateway serves and the service that owns it.

One table, read by the router, the auth check and the OpenAPI document. A path not listed here
is a 404 at the gateway; a listed path with another method is a 405.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "/api/v1"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    service: str
    admin: bool = False
    timeout: float | None = None  # seconds; the gateway's default when None
    summary: str = ""
    # A POST whose repeat has the effect of one call even without an Idempotency-Key: the gateway
    # may send it again when its connection was lost before any answer (see handlers.repeatable).
    repeatable: bool = False


ROUTES: tuple[Route, ...] = (
    # basket: catalogue (variants before products so that /products/variants/x is not a product id)
    Route("GET", "/products/variants/{id}", "basket", summary="A product variant"),
    Route("PUT", "/products/variants/{id}", "basket", admin=True, summary="Update a variant"),
    Route("PUT", "/products/variants/{id}/inventory", "basket", admin=True, summary="Set a variant's inventory"),
    Route("GET", "/products", "basket", summary="Products (paginated)"),
    Route("POST", "/products", "basket", admin=True, summary="Create a product with variants"),
    Route("GET", "/products/{id}", "basket", summary="A product"),
    # basket: baskets and lines
    Route("POST", "/baskets", "basket", summary="Create a basket or replace its lines"),
    Route("GET", "/baskets/{id}", "basket", summary="A basket"),
    Route("POST", "/basket-lines", "basket", summary="Add lines to a basket"),
    Route("DELETE", "/basket-lines", "basket", summary="Delete several lines"),
    Route("PUT", "/basket-lines/{id}", "basket", summary="Set a line's quantity"),
    Route("DELETE", "/basket-lines/{id}", "basket", summary="Delete a line"),
    Route("POST", "/basket-lines/{id}/add", "basket", summary="Increase a line's quantity"),
    Route("PUT", "/basket-lines/{id}/remove", "basket", summary="Decrease a line's quantity"),
    # orders
    # Safe by design: one charge per order whatever the number of calls (the order's state machine).
    Route("POST", "/orders/process", "orders", timeout=30.0, summary="Process (pay for) an order", repeatable=True),
    Route("POST", "/orders", "orders", summary="Create or re-sync the basket's order"),
    Route("GET", "/orders", "orders", admin=True, summary="Orders (paginated)"),
    Route("GET", "/orders/{id}", "orders", summary="An order"),
    Route("PUT", "/orders/{id}", "orders", admin=True, summary="Set an order's status or tracking number"),
    Route("POST", "/orders/{id}/expire", "orders", admin=True, summary="Expire an unplaced order"),
    Route("PUT", "/orders/{id}/shipping/address", "orders", summary="Set the shipping address"),
    Route("PUT", "/orders/{id}/billing/address", "orders", summary="Set the billing address"),
    Route("PUT", "/orders/{id}/contact", "orders", summary="Set the contact details"),
    Route("GET", "/orders/{id}/shipping/methods", "orders", summary="Shipping prices that apply"),
    Route("PUT", "/orders/{id}/shipping/cost", "orders", summary="Choose a shipping price"),
    # shipping (admin)
    Route("GET", "/shipping/zones", "shipping", admin=True, summary="Shipping zones"),
    Route("POST", "/shipping/zones", "shipping", admin=True, summary="Create a zone"),
    Route("PUT", "/shipping/zones/{id}", "shipping", admin=True, summary="Change a zone"),
    Route("GET", "/shipping/methods", "shipping", admin=True, summary="Shipping methods"),
    Route("POST", "/shipping/methods", "shipping", admin=True, summary="Create a method"),
    Route("PUT", "/shipping/methods/{id}", "shipping", admin=True, summary="Change a method"),
    Route("GET", "/shipping/prices", "shipping", admin=True, summary="Shipping prices"),
    Route("POST", "/shipping/prices", "shipping", admin=True, summary="Create a price"),
    Route("PUT", "/shipping/prices/{id}", "shipping", admin=True, summary="Change a price"),
    Route("GET", "/shipments", "shipping", admin=True, summary="Shipments"),
    Route("POST", "/shipments/{id}/dispatch", "shipping", admin=True, summary="Dispatch a shipment"),
    # payments
    Route("GET", "/payments/provider", "payments", summary="The default provider and a client token"),
    Route("GET", "/payments/types", "payments", summary="Payment types"),
    Route("POST", "/payments/{id}/refund", "payments", admin=True, summary="Refund a transaction"),
    Route("POST", "/payments/{id}/void", "payments", admin=True, summary="Void a transaction"),
)
