-- One order per basket that has not expired, placed or not. A placed order keeps its key in the
-- index, so an order created while another one of the basket is being placed conflicts with it
-- (the unique check sees the latest row versions): no advisory lock and no transaction are needed
-- around POST /orders, and no check of a snapshot that a concurrent placement could outdate.
CREATE UNIQUE INDEX orders_one_per_basket ON orders (basket_id) WHERE status <> 'expired';
DROP INDEX orders_one_open_per_basket;
