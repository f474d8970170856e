-- Discounts: a coupon (applied to a basket by its code) or automatic (no code: every basket that
-- meets its criteria gets it). Amounts are integer minor units of `currency`; the percentage is in
-- basis points (1250 = 12.5%). `uses` counts placed orders, `reserved` the checkouts in flight that
-- hold a use; both change only under the discount's row lock, like a variant's `reserved`.
CREATE TABLE discounts (
    id                     text PRIMARY KEY,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    coupon                 text CHECK (length(coupon) BETWEEN 1 AND 64),
    status                 boolean NOT NULL DEFAULT true,
    priority               integer NOT NULL DEFAULT 0,
    stop_rules             boolean NOT NULL DEFAULT false,
    start_at               timestamptz,
    end_at                 timestamptz,
    usage_limit            integer CHECK (usage_limit >= 1),
    usage_limit_per_email  integer CHECK (usage_limit_per_email >= 1),
    currency               text NOT NULL,
    min_basket             bigint NOT NULL DEFAULT 0 CHECK (min_basket >= 0),
    product_ids            text[] NOT NULL DEFAULT '{}',
    variant_ids            text[] NOT NULL DEFAULT '{}',
    percentage_bp          integer CHECK (percentage_bp BETWEEN 1 AND 10000),
    fixed_amount           bigint CHECK (fixed_amount >= 1),
    free_shipping          boolean NOT NULL DEFAULT false,
    uses                   integer NOT NULL DEFAULT 0 CHECK (uses >= 0),
    reserved               integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    version                integer NOT NULL DEFAULT 1,
    CONSTRAINT discounts_reward CHECK (percentage_bp IS NOT NULL OR fixed_amount IS NOT NULL OR free_shipping),
    CONSTRAINT discounts_period CHECK (start_at IS NULL OR end_at IS NULL OR end_at > start_at),
    -- A per-email limit needs the email of the checkout that uses it: only a coupon's is known to
    -- the shopper, who can remove the coupon when the limit refuses it.
    CONSTRAINT discounts_email_limit_needs_coupon CHECK (usage_limit_per_email IS NULL OR coupon IS NOT NULL)
);
-- Coupon codes are unique whatever their case.
CREATE UNIQUE INDEX discounts_coupon ON discounts (lower(coupon)) WHERE coupon IS NOT NULL;
CREATE INDEX discounts_automatic ON discounts (priority, id) WHERE coupon IS NULL AND status;
CREATE INDEX discounts_listing ON discounts (created_at, id);

-- The coupon a shopper applied to a basket (one at a time). It goes with its basket, and with its
-- discount when an admin deletes that.
CREATE TABLE basket_coupons (
    basket_id    text PRIMARY KEY REFERENCES baskets (id) ON DELETE CASCADE,
    discount_id  text NOT NULL REFERENCES discounts (id) ON DELETE CASCADE,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX basket_coupons_discount ON basket_coupons (discount_id);

-- The discounts a checkout uses, reserved with its stock: a use is held while its reservation is
-- active, counted once it is committed, and given back when it is released. The contact email is
-- kept only as a digest, enough to count uses per email.
CREATE TABLE discount_uses (
    reservation_id  text NOT NULL REFERENCES stock_reservations (id),
    discount_id     text NOT NULL REFERENCES discounts (id) ON DELETE CASCADE,
    order_id        text NOT NULL,
    email_key       text,
    amount          bigint NOT NULL CHECK (amount >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reservation_id, discount_id)
);
CREATE INDEX discount_uses_email ON discount_uses (discount_id, email_key);
