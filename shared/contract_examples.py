"""Realistic example payloads of every message in the contract registry, in their wire form.

Keyed like the published schemas (`<type>.v<version>`, see `shared/contracts_schema.py`), each a
list of payloads as they travel on the bus (JSON: ids as strings, uuids and datetimes as text).
They document what a producer sends and feed the consumer contract tests (`tests/contracts`):
every example validates against its model and its published JSON schema, and every consumer of
the message handles it. Kept out of the models' `json_schema_extra` on purpose, so that editing
an example never changes a published schema. Ids look like `shared.http.new_id()` output.
"""

from __future__ import annotations

from typing import Any

ORDER_ID = "q7mzk2d4wr5xb3nhtc6vfa2l"
BASKET_ID = "b4sk3tz7mq2vwx5nrd6hkc3p"
ATTEMPT_ID = "6f1c2a8e-4b7d-4e3a-9c5f-2d8b7a6e1f40"
RESERVATION_ID = "r3sv7kq2mzw4xd5bn6tpha2c"
VARIANT_A = "v4ri7ntaq2mz5xkw3bd6rhnc"
VARIANT_B = "v4ri7ntbz6pk2qw5mx3tdh4a"
PRODUCT_ID = "pr0d7ctq2mzw4xk5bn3rdh6a"
TRANSACTION_ID = "tx7q2mzk4wd5xb3nhrc6vfal"
SHIPMENT_ID = "sh1pq2mz7kw4xd5bn3rtha6c"
PRICE_ID = "pr1c3q2mzk4wx5bd7ntha3rc"
METHOD_ID = "m3thq2mzk7wx4bd5nrta6hcv"
ZONE_ID = "z0n3q2mzk7wx4bd5nrtah6cv"
CARD_TYPE_ID = "0f5d3c2b1a0948e7a6b5c4d3e2f10a9b"
CUSTOMER_ID = "cu5tq2mzk7wx4bd5nrtah6cv"

LINES = [
    {"variant_id": VARIANT_A, "sku": "TSHIRT-BLK-M", "quantity": 2},
    {"variant_id": VARIANT_B, "sku": "MUG-WHT", "quantity": 1},
]

ADDRESS = {
    "firstname": "Ada",
    "lastname": "Lovelace",
    "company_name": None,
    "address": "12 St James's Square",
    "address_two": None,
    "address_three": None,
    "city": "London",
    "county": "Greater London",
    "state": None,
    "zip": "SW1Y 4JH",
    "country": "GB",
    "phone": "+44 20 7946 0000",
    "email": "ada@example.com",
}

CAPTURE = {
    "id": TRANSACTION_ID,
    "order_id": ORDER_ID,
    "transaction_id": "sbx_ch_5f2a9c1e7b3d",
    "merchant": "commerce-demo",
    "amount": 4398,
    "currency": "GBP",
    "provider": "Sandbox",
    "driver": "sandbox",
    "success": True,
    "refund": False,
    "status": "captured",
    "card_type": "visa",
    "last_four": "1111",
    "notes": None,
    "created_at": "2024-05-14T10:21:07.412000Z",
}

# An offline "capture": the order is placed, but no money was received.
OFFLINE_CAPTURE = CAPTURE | {
    "transaction_id": "offline-6f1c2a8e-4b7d-4e3a-9c5f-2d8b7a6e1f40",
    "amount": 1499,
    "provider": "Offline",
    "driver": "offline",
    "card_type": None,
    "last_four": None,
}

DECLINE = CAPTURE | {
    "transaction_id": "sbx_ch_9a7e3b2c1d0f",
    "success": False,
    "status": "declined",
    "card_type": "visa",
    "last_four": "0002",
}

REFUND = CAPTURE | {
    "id": "tx7r3fq2mzk4wd5xbnhc6vfa",
    "transaction_id": "sbx_re_3c9d2e1f7a5b",
    "amount": 1499,
    "refund": True,
    "status": "refunded",
    "notes": "Returned one mug",
    "created_at": "2024-05-20T09:02:11.003000Z",
}

VOID = CAPTURE | {
    "id": "tx7v0dq2mzk4wd5xbnhc6vfa",
    "transaction_id": "sbx_ch_5f2a9c1e7b3d",
    "amount": 0,
    "success": True,
    "status": "voided",
    "created_at": "2024-05-14T11:00:00Z",
}

SNAPSHOT_LINE = {
    "variant_id": VARIANT_A,
    "product_id": PRODUCT_ID,
    "sku": "TSHIRT-BLK-M",
    "description": "Organic T-shirt",
    "option": "Black / M",
    "quantity": 2,
    "unit_price": 1666,
    "unit_qty": 1,
    "tax_rate_bp": 2000,
    "line_total": 3332,
    "tax_total": 666,
    "discount_total": 0,
    "weight_grams": 360,
    "requires_shipping": True,
}

COUPON_USE = {
    "discount_id": "d1sc7q2mzk4wx5bd3ntha6rc",
    "name": "Spring sale",
    "coupon": "SPRING10",
    "amount": 433,
    "free_shipping": True,
}

STANDARD_PRICE = {
    "id": PRICE_ID,
    "rate": 499,
    "tax": 99,
    "fixed": True,
    "min_basket": 0,
    "min_weight": 0,
    "weight_unit": "kg",
    "currency": "GBP",
    "method": {
        "id": METHOD_ID,
        "type": "standard",
        "name": "Royal Mail 2nd Class",
        "description": "2 to 3 working days",
        "code": "RM2",
    },
    "zone": {"id": ZONE_ID, "name": "United Kingdom"},
}

EXAMPLES: dict[str, list[dict[str, Any]]] = {
    # --- basket
    "basket.changed.v1": [
        {
            "basket_id": BASKET_ID,
            "currency": "GBP",
            "sub_total": 3665,
            "tax_total": 733,
            "total": 4398,
            "line_count": 2,
        },
        {"basket_id": BASKET_ID, "currency": "EUR", "sub_total": 0, "tax_total": 0, "total": 0, "line_count": 0},
        {
            "basket_id": BASKET_ID,
            "currency": "GBP",
            "sub_total": 3665,
            "tax_total": 660,
            "total": 3959,
            "line_count": 2,
            "discount_total": 366,
        },
    ],
    "stock.reserved.v1": [
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "reservation_id": RESERVATION_ID,
            "expires_at": "2024-05-14T10:36:02.118000Z",
        }
    ],
    "stock.refused.v1": [
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "errors": {"lines.0.quantity": ["Only 1 of TSHIRT-BLK-M is available"]},
        },
        {"order_id": ORDER_ID, "attempt_id": ATTEMPT_ID, "errors": {"basket_id": ["The basket is empty"]}},
    ],
    "stock.released.v1": [
        {"order_id": ORDER_ID, "reservation_id": RESERVATION_ID, "reason": "order-failed"},
        {"order_id": ORDER_ID, "reservation_id": RESERVATION_ID, "reason": "expired"},
    ],
    "stock.committed.v1": [{"order_id": ORDER_ID, "reservation_id": RESERVATION_ID, "lines": LINES}],
    # --- orders
    "order.created.v1": [
        {
            "order_id": ORDER_ID,
            "basket_id": BASKET_ID,
            "status": "awaiting-payment",
            "order_total": 4897,
            "currency": "GBP",
        }
    ],
    "order.status_changed.v1": [
        {"order_id": ORDER_ID, "from_status": "payment-processing", "to_status": "payment-received"},
        {
            "order_id": ORDER_ID,
            "from_status": "payment-received",
            "to_status": "dispatched",
            "tracking_no": "JD014600003828",
        },
        {"order_id": ORDER_ID, "from_status": "offline-payment", "to_status": "payment-received", "marks_paid": True},
    ],
    "order.stock_requested.v1": [
        {"order_id": ORDER_ID, "attempt_id": ATTEMPT_ID, "basket_id": BASKET_ID, "lines": LINES},
        # With a coupon: basket reserves a use of it with the stock (per-email limits by `email`).
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "basket_id": BASKET_ID,
            "lines": LINES,
            "discounts": [COUPON_USE],
            "email": "ada@example.com",
        },
    ],
    "order.charge_requested.v1": [
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "amount": 4897,
            "currency": "GBP",
            "payment_type_id": CARD_TYPE_ID,
            "payment_token": "fake-valid-nonce",
            "customer_email": "ada@example.com",
            "notes": "Leave with the neighbour",
        },
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "amount": 4897,
            "currency": "GBP",
            "payment_type_id": "offline",
        },
    ],
    "order.placed.v1": [
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "basket_id": BASKET_ID,
            "reference": "2024-05-0042",
            "status": "payment-received",
            "order_total": 4897,
            "currency": "GBP",
            "lines": LINES,
            "shipping_address": ADDRESS,
            "shipping_method": "standard",
            "shipping_price_id": PRICE_ID,
            "placed_at": "2024-05-14T10:21:08.020000Z",
        },
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "basket_id": BASKET_ID,
            "reference": "2024-05-0043",
            "status": "offline-payment",
            "order_total": 1499,
            "currency": "GBP",
            "lines": LINES[1:],
            "placed_at": "2024-05-14T10:25:00Z",
            "paid": False,
        },
    ],
    "order.failed.v1": [
        {"order_id": ORDER_ID, "attempt_id": ATTEMPT_ID, "basket_id": BASKET_ID, "reason": "stock-refused"},
        {"order_id": ORDER_ID, "attempt_id": ATTEMPT_ID, "basket_id": "", "reason": "stock-reservation-timed-out"},
    ],
    # --- payments
    "payment.captured.v1": [
        {"order_id": ORDER_ID, "attempt_id": ATTEMPT_ID, "success_status": "payment-received", "transaction": CAPTURE},
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "success_status": "offline-payment",
            "transaction": OFFLINE_CAPTURE,
            "paid": False,
        },
    ],
    "payment.declined.v1": [
        {
            "order_id": ORDER_ID,
            "attempt_id": ATTEMPT_ID,
            "reason": "Processor declined: insufficient funds",
            "transaction": DECLINE,
        },
        {"order_id": ORDER_ID, "attempt_id": ATTEMPT_ID, "reason": "The selected payment type is invalid."},
    ],
    "payment.refunded.v1": [
        {"order_id": ORDER_ID, "refunded_total": 1499, "fully_refunded": False, "transaction": REFUND},
        {
            "order_id": ORDER_ID,
            "refunded_total": 4398,
            "fully_refunded": True,
            "transaction": REFUND | {"amount": 2899, "notes": None},
        },
    ],
    "payment.voided.v1": [{"order_id": ORDER_ID, "transaction": VOID}],
    # --- shipping
    "shipment.opened.v1": [{"shipment_id": SHIPMENT_ID, "order_id": ORDER_ID}],
    "shipment.dispatched.v1": [
        {
            "shipment_id": SHIPMENT_ID,
            "order_id": ORDER_ID,
            "tracking_no": "JD014600003828",
            "dispatched_at": "2024-05-15T08:30:00Z",
        },
        {"shipment_id": SHIPMENT_ID, "order_id": ORDER_ID, "dispatched_at": "2024-05-15T08:30:00+01:00"},
    ],
    # --- customers
    "customer.registered.v1": [
        {
            "customer_id": CUSTOMER_ID,
            "email": "ada@example.com",
            "firstname": "Ada",
            "lastname": "Lovelace",
            "company_name": "Analytical Engines Ltd",
            "registered_at": "2024-05-14T09:58:12.402000Z",
        },
        {
            "customer_id": CUSTOMER_ID,
            "email": "Charles.Babbage@example.org",
            "firstname": "Charles",
            "lastname": "Babbage",
            "registered_at": "2024-05-14T10:02:00Z",
        },
    ],
    "customer.password_changed.v1": [{"customer_id": CUSTOMER_ID, "changed_at": "2024-05-16T18:45:31.117000Z"}],
    # --- request/reply
    "basket.snapshot.v1": [
        {"basket_id": BASKET_ID},
        {"basket_id": "not-a-basket"},
        {"basket_id": BASKET_ID, "customer_id": CUSTOMER_ID},
    ],
    "basket.snapshot.reply.v1": [
        {
            "basket": {
                "id": BASKET_ID,
                "currency": "GBP",
                "used": False,
                "sub_total": 3665,
                "tax_total": 733,
                "discount_total": 0,
                "total": 4398,
                "weight_grams": 660,
                "lines": [
                    SNAPSHOT_LINE,
                    SNAPSHOT_LINE
                    | {
                        "variant_id": VARIANT_B,
                        "sku": "MUG-WHT",
                        "description": "Enamel mug",
                        "option": None,
                        "quantity": 1,
                        "unit_price": 1000,
                        "line_total": 1000,
                        "tax_total": 200,
                        "weight_grams": 300,
                    },
                ],
            }
        },
        # A signed-in customer's basket: its order becomes theirs.
        {
            "basket": {
                "id": BASKET_ID,
                "currency": "GBP",
                "used": False,
                "sub_total": 3332,
                "tax_total": 666,
                "discount_total": 0,
                "total": 3998,
                "weight_grams": 360,
                "lines": [SNAPSHOT_LINE],
                "customer_id": CUSTOMER_ID,
            }
        },
        # With a coupon: 10% off both lines and free shipping.
        {
            "basket": {
                "id": BASKET_ID,
                "currency": "GBP",
                "used": False,
                "sub_total": 4332,
                "tax_total": 779,
                "discount_total": 433,
                "total": 4678,
                "weight_grams": 660,
                "lines": [
                    SNAPSHOT_LINE | {"discount_total": 333, "tax_total": 599},
                    SNAPSHOT_LINE
                    | {
                        "variant_id": VARIANT_B,
                        "sku": "MUG-WHT",
                        "description": "Enamel mug",
                        "option": None,
                        "quantity": 1,
                        "unit_price": 1000,
                        "line_total": 1000,
                        "tax_total": 180,
                        "discount_total": 100,
                        "weight_grams": 300,
                    },
                ],
                "discounts": [COUPON_USE],
                "free_shipping": True,
            }
        },
        # In euros: the catalogue's pounds converted at 1.165 (16.66 GBP is 19.41 EUR).
        {
            "basket": {
                "id": BASKET_ID,
                "currency": "EUR",
                "used": False,
                "sub_total": 3882,
                "tax_total": 776,
                "discount_total": 0,
                "total": 4658,
                "weight_grams": 360,
                "lines": [SNAPSHOT_LINE | {"unit_price": 1941, "line_total": 3882, "tax_total": 776}],
                "base_currency": "GBP",
                "exchange_rate": "1.165",
            }
        },
        {"basket": None},
    ],
    "shipping.quote.v1": [
        {
            "order_id": ORDER_ID,
            "country": "GB",
            "zip": "SW1Y 4JH",
            "sub_total": 3665,
            "weight_grams": 660,
            "currency": "GBP",
        },
        {
            "order_id": ORDER_ID,
            "country": "gb",
            "sub_total": 3665,
            "weight_grams": 660,
            "currency": "GBP",
            "price_id": PRICE_ID,
        },
    ],
    "shipping.quote.reply.v1": [{"prices": [STANDARD_PRICE]}, {"prices": []}],
    "payment.resolve.v1": [
        {"payment_type_id": CARD_TYPE_ID, "payment_token": "fake-valid-nonce"},
        {"payment_type": "card", "payment_token": "fake-valid-nonce"},
        {"payment_type": "offline"},
        {},
    ],
    "payment.resolve.reply.v1": [
        {
            "payment_type": {
                "id": CARD_TYPE_ID,
                "name": "Card",
                "handle": "card",
                "driver": "sandbox",
                "success_status": "payment-received",
            },
            "errors": {},
        },
        {"payment_type": None, "errors": {"payment_type_id": ["The selected payment type is invalid."]}},
    ],
    "customer.address.v1": [{"customer_id": CUSTOMER_ID, "address_id": "ad7rq2mzk4wx5bd3nhtc6vfa"}],
    "customer.address.reply.v1": [{"address": ADDRESS}, {"address": None}],
}
