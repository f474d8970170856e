"""The public operations of the orders service (see `shared.operations`): the one table the app's
routes, the gateway's route table and the OpenAPI document are built from."""

from __future__ import annotations

from orders import admin, basket_orders, checkout, countries, details, invoices, order_types, shipping
from orders.invoices import InvoiceEnvelope
from orders.models import (
    AddressBody,
    ContactIn,
    CountriesQuery,
    CountryIn,
    CreateOrderIn,
    ListOrdersQuery,
    ProcessIn,
    ShippingCostIn,
    UpdateOrderIn,
)
from orders.views import (
    CountryCollection,
    CountryResponse,
    OrderEnvelope,
    OrderList,
    OrderTypeList,
    ShippingPriceList,
)
from shared.operations import OPTIONAL, Link, Operation

# The checkout, as links (see `shared.operations.Link`): an order leads to its details, its shipping
# prices, the choice of one, and its processing.
ORDER_ID = "$response.body#/data/id"
THIS_ORDER = "$request.path.id"


def _details_of(order_id: str) -> tuple[Link, ...]:
    return (
        Link("SetShippingAddress", "PUT /orders/{id}/shipping/address", {"path.id": order_id}),
        Link("SetBillingAddress", "PUT /orders/{id}/billing/address", {"path.id": order_id}),
        Link("SetContact", "PUT /orders/{id}/contact", {"path.id": order_id}),
        Link("ShippingPrices", "GET /orders/{id}/shipping/methods", {"path.id": order_id}),
        Link("Process", "POST /orders/process", body={"order_id": order_id}),
        Link("GetOrder", "GET /orders/{id}", {"path.id": order_id}),
    )


# After a change to an order's details: the next ones, or processing it.
NEXT_STEPS = _details_of(THIS_ORDER)

PROCESS_DESCRIPTION = (
    "Runs the checkout saga and waits for its outcome: 200 with the placed order (lines, shipping, "
    "transactions); 403 `Payment has failed` (the order is `failed` and can be processed again with a "
    "new token); 422 `This order has already been processed`, a map of what the order lacks, or the "
    "stock errors; 409 while another attempt is in flight. Past the deadline: 202 with the order "
    "still `payment-processing` (same body shape); a later GET shows the outcome."
)

OPERATIONS: list[Operation] = [
    Operation(
        "POST",
        "/orders/process",
        checkout.process_order,
        "Process (pay for) an order",
        customer=OPTIONAL,
        request=ProcessIn,
        response=OrderEnvelope,
        errors=(403, 409, 422, 503),
        description=PROCESS_DESCRIPTION,
        timeout=30.0,
        repeatable=True,
        links=(Link("GetOrder", "GET /orders/{id}", {"path.id": ORDER_ID}),),
    ),
    Operation(
        "POST",
        "/orders",
        basket_orders.create_order,
        "Create or re-sync the basket's order",
        customer=OPTIONAL,
        request=CreateOrderIn,
        response=OrderEnvelope,
        errors=(403, 409, 422, 503),
        links=_details_of(ORDER_ID),
    ),
    Operation(
        "GET",
        "/orders",
        admin.list_orders,
        "Orders (paginated)",
        admin=True,
        customer=True,
        query=ListOrdersQuery,
        response=OrderList,
        errors=(401, 403, 422),
        description="An admin's token: every order. A customer's access token: their own orders, the same filters.",
    ),
    # Before /orders/{id}: the literal segment is never read as an order id.
    Operation(
        "GET",
        "/orders/types",
        order_types.list_order_types,
        "The types of placed orders",
        response=OrderTypeList,
        description="The distinct types of placed orders (`{label}`), at most 100, in order.",
    ),
    Operation(
        "GET",
        "/orders/{id}",
        basket_orders.get_order,
        "An order",
        customer=OPTIONAL,
        response=OrderEnvelope,
        errors=(404,),
    ),
    Operation(
        "GET",
        "/orders/{id}/invoice",
        invoices.get_invoice,
        "A placed order's invoice (PDF)",
        customer=OPTIONAL,
        response=InvoiceEnvelope,
        errors=(404,),
        description=(
            "The invoice as upstream sent it, a base64 PDF in `data.content`; with `Accept: application/pdf` "
            "the PDF itself. 404 for an order that is not placed."
        ),
    ),
    Operation(
        "PUT",
        "/orders/{id}",
        admin.update_order,
        "Set an order's status or tracking number",
        admin=True,
        request=UpdateOrderIn,
        response=OrderEnvelope,
        errors=(401, 403, 404, 409, 422),
    ),
    Operation(
        "POST",
        "/orders/{id}/expire",
        admin.expire_order,
        "Expire an unplaced order",
        admin=True,
        status=204,
        errors=(401, 403, 404, 409, 422),
    ),
    Operation(
        "PUT",
        "/orders/{id}/shipping/address",
        details.put_shipping_address,
        "Set the shipping address",
        customer=OPTIONAL,
        request=AddressBody,
        response=OrderEnvelope,
        errors=(403, 404, 409, 422, 503),
        links=NEXT_STEPS,
    ),
    Operation(
        "PUT",
        "/orders/{id}/billing/address",
        details.put_billing_address,
        "Set the billing address",
        customer=OPTIONAL,
        request=AddressBody,
        response=OrderEnvelope,
        errors=(403, 404, 409, 422, 503),
        links=NEXT_STEPS,
    ),
    Operation(
        "PUT",
        "/orders/{id}/contact",
        details.put_contact,
        "Set the contact details",
        customer=OPTIONAL,
        request=ContactIn,
        response=OrderEnvelope,
        errors=(403, 404, 409, 422),
        links=NEXT_STEPS,
    ),
    Operation(
        "GET",
        "/orders/{id}/shipping/methods",
        shipping.shipping_methods,
        "Shipping prices that apply",
        customer=OPTIONAL,
        response=ShippingPriceList,
        errors=(404, 422, 503),
        links=(
            Link(
                "ChooseShippingPrice",
                "PUT /orders/{id}/shipping/cost",
                {"path.id": THIS_ORDER},
                body={"price_id": "$response.body#/data/0/id"},
            ),
        ),
    ),
    Operation(
        "PUT",
        "/orders/{id}/shipping/cost",
        shipping.put_shipping_cost,
        "Choose a shipping price",
        customer=OPTIONAL,
        request=ShippingCostIn,
        response=OrderEnvelope,
        errors=(403, 404, 409, 422, 503),
        links=NEXT_STEPS,
    ),
    # Countries: the addresses of orders name one.
    Operation(
        "GET",
        "/countries",
        countries.list_countries,
        "Countries (ISO 3166), enabled ones unless show_disabled",
        query=CountriesQuery,
        response=CountryCollection,
        errors=(422,),
    ),
    Operation("GET", "/countries/{id}", countries.get_country, "A country", response=CountryResponse, errors=(404,)),
    Operation(
        "PUT",
        "/countries/{id}",
        countries.update_country,
        "Enable or disable a country, mark it preferred",
        admin=True,
        request=CountryIn,
        response=CountryResponse,
        errors=(401, 403, 404, 422),
    ),
]
