-- Baskets of signed-in customers. A basket belongs to the customer who created it signed in or
-- claimed it (customer_id; NULL for a guest's), since owned_at: their current basket is the one
-- most recently theirs that is neither ordered, merged nor saved. A basket merged into the
-- customer's current one (`POST /baskets/resolve`) is emptied and names the basket it went into
-- (merged_into). A saved basket is a customer's named copy (saved_name), reached only under
-- /baskets/saved.
ALTER TABLE baskets
    ADD COLUMN customer_id text,
    ADD COLUMN owned_at    timestamptz,
    ADD COLUMN merged_into text,
    ADD COLUMN saved_name  text,
    ADD CONSTRAINT baskets_saved_is_owned CHECK (saved_name IS NULL OR customer_id IS NOT NULL);

CREATE INDEX baskets_current_of_customer ON baskets (customer_id, owned_at DESC, id DESC)
    WHERE customer_id IS NOT NULL AND order_id IS NULL AND merged_into IS NULL AND saved_name IS NULL;
CREATE INDEX baskets_saved_of_customer ON baskets (customer_id, created_at DESC, id DESC)
    WHERE saved_name IS NOT NULL;
