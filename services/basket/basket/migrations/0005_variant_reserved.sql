-- Stock held by active reservations, kept on the variant and changed with every reservation
-- change under the variant's row lock: a reservation reads what is free from the row it locks
-- instead of summing every reservation line ever written for the variant (a cost that grew with
-- the history of sales).
ALTER TABLE variants ADD COLUMN reserved integer NOT NULL DEFAULT 0;

UPDATE variants v SET reserved = held.quantity
FROM (
    SELECT l.variant_id, sum(l.quantity) AS quantity
    FROM stock_reservation_lines l
    JOIN stock_reservations r ON r.id = l.reservation_id
    WHERE r.status = 'active'
    GROUP BY l.variant_id
) held
WHERE v.id = held.variant_id;

ALTER TABLE variants ADD CONSTRAINT variants_reserved_not_negative CHECK (reserved >= 0);
