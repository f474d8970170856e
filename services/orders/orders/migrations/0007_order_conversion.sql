-- Orders in another currency than the catalogue's (upstream GetCandy's `conversion` column): the
-- basket's prices are the catalogue's, in `base_currency`, converted at `conversion` units of the
-- order's currency per unit of the base (basket's `currencies.exchange_rate`, the same precision),
-- and the order keeps both as its basket's snapshot gave them at the last sync. Orders made before
-- had their prices in their own currency, converted at nothing: 1, the base not recorded (NULL).
ALTER TABLE orders ADD COLUMN base_currency text;
ALTER TABLE orders ADD COLUMN conversion numeric(18, 8) NOT NULL DEFAULT 1
    CONSTRAINT orders_conversion_positive CHECK (conversion > 0);
