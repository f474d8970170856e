-- Shipments of unpaid orders. An order placed with a payment type whose success is not money
-- received (offline) gets its shipment `held`: not announced, not dispatchable. It opens when
-- orders announces that the order was marked paid.
ALTER TABLE shipments DROP CONSTRAINT shipments_status_check;
ALTER TABLE shipments ADD CONSTRAINT shipments_status_check CHECK (status IN ('held', 'open', 'dispatched'));

-- Orders seen marked paid. The announcement that an order was paid can reach shipping before the
-- one that it was placed (a redelivery, a retry): the placement then finds the order paid here
-- and opens its shipment at once instead of holding it for good.
CREATE TABLE paid_orders (
    order_id     text PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now()
);
