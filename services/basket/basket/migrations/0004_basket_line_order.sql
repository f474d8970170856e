-- Lines keep the order they were added in (several lines added in one transaction share their
-- created_at, so that column alone cannot order them).
ALTER TABLE basket_lines ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX basket_lines_basket ON basket_lines (basket_id, seq);
