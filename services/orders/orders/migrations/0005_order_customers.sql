-- Orders of signed-in customers: an order belongs to the customer whose basket it was made from,
-- or who made it while signed in (customer_id; NULL for a guest's order). `GET /orders` lists a
-- customer's own, newest first (placed, else created).
ALTER TABLE orders ADD COLUMN customer_id text;
CREATE INDEX orders_of_customer ON orders (customer_id, (coalesce(placed_at, created_at)) DESC, id)
    WHERE customer_id IS NOT NULL;
