-- The discounts an order uses, as its basket gave them (id, name, coupon, amount off the goods in
-- minor units, free_shipping): kept with the order, so that it shows them whatever becomes of the
-- discounts, and sent to basket with the checkout's stock request to reserve their uses.
ALTER TABLE orders ADD COLUMN discounts jsonb NOT NULL DEFAULT '[]';
