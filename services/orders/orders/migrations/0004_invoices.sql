-- Issued invoices: a placed order's invoice is printed once, on its first request, and kept, so
-- that the document a shop sent is the document it can show again (an issued invoice must not
-- change, whatever the seller's settings or the printing code become later).
CREATE TABLE invoices (
    order_id    text PRIMARY KEY REFERENCES orders (id),
    reference   text NOT NULL,
    document    bytea NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now()
);
