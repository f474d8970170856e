-- Baskets and their lines. A basket is "used" once its order is placed (order_id set): from
-- then on it can no longer change.

CREATE TABLE baskets (
    id          text PRIMARY KEY,
    currency    text NOT NULL DEFAULT 'GBP',
    meta        jsonb NOT NULL DEFAULT '{}',
    order_id    text,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer NOT NULL DEFAULT 1
);

CREATE TABLE basket_lines (
    id          text PRIMARY KEY,
    basket_id   text NOT NULL REFERENCES baskets (id) ON DELETE CASCADE,
    variant_id  text NOT NULL REFERENCES variants (id),
    quantity    integer NOT NULL CHECK (quantity >= 1),
    meta        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- One line per variant: adding a variant already present increases its quantity.
    UNIQUE (basket_id, variant_id)
);
CREATE INDEX basket_lines_variant ON basket_lines (variant_id);
