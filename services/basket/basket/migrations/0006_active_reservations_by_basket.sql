-- A basket whose checkout holds stock (an active reservation) is in flight and cannot be deleted:
-- the delete asks for that by basket, among the few reservations that are active.
CREATE INDEX stock_reservations_active_basket ON stock_reservations (basket_id) WHERE status = 'active';
