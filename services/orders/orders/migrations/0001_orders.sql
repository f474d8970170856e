-- Orders: a snapshot of a basket, its addresses and contact, totals in minor units, the status
-- machine's state (status + version for compare-and-set) and the references of a placed order.

CREATE SEQUENCE order_display_seq;

CREATE TABLE orders (
    id                  text PRIMARY KEY,
    basket_id           text NOT NULL,
    status              text NOT NULL,
    version             integer NOT NULL DEFAULT 1,
    type                text,
    currency            text NOT NULL,
    sub_total           bigint NOT NULL DEFAULT 0,
    delivery_total      bigint NOT NULL DEFAULT 0,
    discount_total      bigint NOT NULL DEFAULT 0,
    tax_total           bigint NOT NULL DEFAULT 0,
    order_total         bigint NOT NULL DEFAULT 0,
    weight_grams        bigint NOT NULL DEFAULT 0,
    -- The basket's own totals at the last sync, shown by `include=basket`.
    basket_totals       jsonb,
    shipping_details    jsonb,
    billing_details     jsonb,
    contact_details     jsonb,
    shipping_method     text,
    shipping_preference text,
    shipping_price_id   text,
    display_id          text NOT NULL UNIQUE,
    reference           text UNIQUE,
    invoice_reference   text UNIQUE,
    customer_reference  text,
    notes               text,
    meta                jsonb NOT NULL DEFAULT '{}',
    tracking_no         text,
    -- The latest checkout attempt (the in-flight one while payment-processing).
    attempt_id          uuid,
    placed_at           timestamptz,
    dispatched_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_total_adds_up CHECK (order_total = sub_total + delivery_total + tax_total),
    CONSTRAINT orders_placed_has_reference CHECK (placed_at IS NULL OR reference IS NOT NULL)
);

-- One open (unplaced, unexpired) order per basket: concurrent POST /orders converge on it.
CREATE UNIQUE INDEX orders_one_open_per_basket ON orders (basket_id)
    WHERE placed_at IS NULL AND status <> 'expired';
CREATE INDEX orders_basket ON orders (basket_id);
CREATE INDEX orders_listing ON orders ((coalesce(placed_at, created_at)) DESC, id);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE order_lines (
    id                text PRIMARY KEY,
    order_id          text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position          integer NOT NULL,
    variant_id        text,
    product_id        text,
    sku               text NOT NULL DEFAULT '',
    description       text NOT NULL,
    option            text,
    quantity          integer NOT NULL CHECK (quantity >= 1),
    unit_price        bigint NOT NULL,
    unit_qty          integer NOT NULL DEFAULT 1,
    line_total        bigint NOT NULL,
    tax_total         bigint NOT NULL,
    tax_rate          integer NOT NULL,
    discount_total    bigint NOT NULL DEFAULT 0,
    delivery_total    bigint NOT NULL DEFAULT 0,
    is_shipping       boolean NOT NULL DEFAULT false,
    is_manual         boolean NOT NULL DEFAULT false,
    requires_shipping boolean NOT NULL DEFAULT true,
    weight_grams      bigint NOT NULL DEFAULT 0,
    meta              jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_lines_order ON order_lines (order_id, position);
CREATE UNIQUE INDEX order_lines_one_shipping ON order_lines (order_id) WHERE is_shipping;

-- Per-month reference counters, incremented in the placing transaction: gap-free and unique.
CREATE TABLE reference_counters (
    period     text PRIMARY KEY,
    last_value integer NOT NULL
);

-- Checkout attempts of the saga. The payment token lives here only until the charge is
-- requested (it then travels in the outbox row alone), and is set NULL in that transaction.
CREATE TABLE checkout_attempts (
    attempt_id          uuid PRIMARY KEY,
    order_id            text NOT NULL REFERENCES orders (id),
    stage               text NOT NULL CHECK (stage IN (
                            'stock_requested', 'charge_requested', 'captured', 'declined', 'refused', 'timed_out')),
    payment_type_id     text NOT NULL,
    payment_type_name   text NOT NULL,
    payment_type_handle text NOT NULL,
    payment_driver      text NOT NULL,
    success_status      text NOT NULL,
    payment_token       text,
    amount              bigint,
    currency            text,
    reservation_id      text,
    reason              text,
    errors              jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- Never a second attempt while one is in flight.
CREATE UNIQUE INDEX checkout_attempts_one_in_flight ON checkout_attempts (order_id)
    WHERE stage IN ('stock_requested', 'charge_requested');
CREATE INDEX checkout_attempts_stalled ON checkout_attempts (created_at) WHERE stage = 'stock_requested';

-- A projection of payments' transactions, from its events, for `include=transactions`.
CREATE TABLE transactions (
    id             text PRIMARY KEY,
    order_id       text NOT NULL,
    attempt_id     uuid,
    transaction_id text NOT NULL,
    merchant       text NOT NULL,
    amount         bigint NOT NULL,
    currency       text NOT NULL,
    provider       text NOT NULL,
    driver         text NOT NULL,
    success        boolean NOT NULL,
    refund         boolean NOT NULL,
    status         text NOT NULL,
    card_type      text,
    last_four      text,
    notes          text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_order ON transactions (order_id, created_at);
