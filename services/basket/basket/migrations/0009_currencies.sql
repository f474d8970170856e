-- The currencies a basket may be in. Catalogue prices are kept in the base currency (the basket
-- service's BASKET_BASE_CURRENCY, rate 1, its row made at start-up); a basket in another currency
-- sees them converted at `exchange_rate` (units of this currency per unit of the base).
-- `is_default` marks the currency a new basket gets when it asks for none: exactly one at most.
CREATE TABLE currencies (
    id              text PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[A-Z]{3}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    exchange_rate   numeric(18, 8) NOT NULL CHECK (exchange_rate > 0),
    format          text NOT NULL CHECK (length(format) BETWEEN 1 AND 64 AND strpos(format, '{price}') > 0),
    decimal_point   text NOT NULL DEFAULT '.' CHECK (length(decimal_point) <= 4),
    thousand_point  text NOT NULL DEFAULT ',' CHECK (length(thousand_point) <= 4),
    enabled         boolean NOT NULL DEFAULT true,
    is_default      boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         integer NOT NULL DEFAULT 1,
    CONSTRAINT currencies_default_enabled CHECK (NOT is_default OR enabled)
);

CREATE UNIQUE INDEX currencies_one_default ON currencies ((true)) WHERE is_default;
