-- Catalogue: products and their purchasable variants. Money is integer minor units (ex-tax),
-- tax rates are basis points (2000 = 20%), weights are grams.

CREATE TABLE products (
    id          text PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer NOT NULL DEFAULT 1
);
CREATE INDEX products_listing ON products (created_at, id);

CREATE TABLE variants (
    id                 text PRIMARY KEY,
    product_id         text NOT NULL REFERENCES products (id),
    position           integer NOT NULL DEFAULT 0,
    sku                text NOT NULL UNIQUE CHECK (length(sku) BETWEEN 1 AND 100),
    name               text,
    options            jsonb NOT NULL DEFAULT '{}',
    price              bigint NOT NULL CHECK (price >= 0),
    currency           text NOT NULL DEFAULT 'GBP',
    tax_rate_bp        integer NOT NULL DEFAULT 2000 CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    -- No lower bound: a placed order is sold even when its reservation expired meanwhile, so
    -- the decrement may take inventory below zero (an oversell the operator must see).
    inventory          integer NOT NULL DEFAULT 0,
    incoming           integer NOT NULL DEFAULT 0 CHECK (incoming >= 0),
    backorder          text NOT NULL DEFAULT 'in-stock' CHECK (backorder IN ('in-stock', 'expected', 'always')),
    min_qty            integer NOT NULL DEFAULT 1 CHECK (min_qty >= 1),
    max_qty            integer NOT NULL DEFAULT 0 CHECK (max_qty >= 0),
    min_batch          integer NOT NULL DEFAULT 1 CHECK (min_batch >= 1),
    unit_qty           integer NOT NULL DEFAULT 1 CHECK (unit_qty >= 1),
    weight_grams       integer NOT NULL DEFAULT 0 CHECK (weight_grams >= 0),
    requires_shipping  boolean NOT NULL DEFAULT true,
    purchasable        boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    version            integer NOT NULL DEFAULT 1
);
CREATE INDEX variants_product ON variants (product_id, position, id);
