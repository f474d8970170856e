-- Payment types by policy. A type is `enabled` (it may be charged at all) and `offered` (the
-- storefront lists it and checkout accepts it: both must hold). `paid_on_success` says whether
-- its success means the money was received: a card capture does, an offline "payment" is only a
-- promise to pay, so its orders are placed but not shipped until an admin marks them paid.
-- `version` makes every policy change a compare-and-set.
--
-- The defaults are the safe ones: a type added later is neither enabled nor offered, and its
-- success is not taken for money received, until someone says otherwise.
ALTER TABLE payment_types
    ALTER COLUMN enabled SET DEFAULT false,
    ADD COLUMN offered          boolean NOT NULL DEFAULT false,
    ADD COLUMN paid_on_success  boolean NOT NULL DEFAULT false,
    ADD COLUMN version          integer NOT NULL DEFAULT 1,
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now();

-- What a fresh installation offers: the card type only. Offline is kept (its past transactions
-- refer to it) but neither enabled nor offered: anyone could otherwise place an order without
-- paying. The demo data (`python -m payments seed`) enables and offers it for `make run`.
UPDATE payment_types SET paid_on_success = true, offered = enabled WHERE handle = 'card';
UPDATE payment_types SET enabled = false, offered = false, paid_on_success = false WHERE handle = 'offline';
