-- Zones, their postcode regions, methods, prices and the shipments of placed orders.

CREATE TABLE zones (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    countries   text[] NOT NULL DEFAULT '{}',   -- ISO 3166 alpha-2, upper case
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX zones_countries ON zones USING gin (countries);

-- A named set of postcode prefixes inside a zone (normalised: upper case, no spaces); `*` is
-- the rest of the zone. A regional price belongs to one region; the longest matching prefix wins.
CREATE TABLE zone_regions (
    id          text PRIMARY KEY,
    zone_id     text NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
    name        text NOT NULL,
    prefixes    text[] NOT NULL CHECK (cardinality(prefixes) > 0),
    UNIQUE (zone_id, name),
    UNIQUE (id, zone_id)
);

CREATE TABLE methods (
    id           text PRIMARY KEY,
    type         text NOT NULL CHECK (type IN ('standard', 'collection', 'regional')),
    name         text NOT NULL,
    description  text,
    code         text UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE prices (
    id          text PRIMARY KEY,
    method_id   text NOT NULL REFERENCES methods (id),
    zone_id     text NOT NULL REFERENCES zones (id),
    region_id   text,
    rate        bigint NOT NULL CHECK (rate >= 0),                 -- minor units, ex-tax
    currency    text NOT NULL,
    min_basket  bigint NOT NULL DEFAULT 0 CHECK (min_basket >= 0), -- against the order's sub_total
    min_weight  integer NOT NULL DEFAULT 0 CHECK (min_weight >= 0), -- grams
    max_weight  integer CHECK (max_weight IS NULL OR max_weight >= min_weight),
    fixed       boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- a price's region must be one of its own zone's
    FOREIGN KEY (region_id, zone_id) REFERENCES zone_regions (id, zone_id)
);
CREATE INDEX prices_zone ON prices (zone_id);
CREATE INDEX prices_method ON prices (method_id);

CREATE TABLE shipments (
    id                 text PRIMARY KEY,
    order_id           text NOT NULL UNIQUE,
    reference          text,
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'dispatched')),
    shipping_method    text,
    shipping_price_id  text,
    address            jsonb,
    tracking_no        text,
    dispatched_at      timestamptz,
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipments_created ON shipments (created_at DESC, id);
CREATE INDEX shipments_status ON shipments (status, created_at DESC);
