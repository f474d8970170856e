-- The admin's flags on ISO 3166 countries (the list itself comes from pycountry): one row per
-- country an admin has set; a country without a row takes the defaults (enabled, not preferred).
-- Addresses may only name an enabled country.
CREATE TABLE countries (
    alpha_2     text PRIMARY KEY CHECK (alpha_2 ~ '^[A-Z]{2}$'),
    enabled     boolean NOT NULL,
    preferred   boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- `GET /orders/types`: the distinct types of placed orders, read by skipping through this index
-- (one probe per type) rather than by scanning every order.
CREATE INDEX orders_placed_type ON orders (type) WHERE placed_at IS NOT NULL;
