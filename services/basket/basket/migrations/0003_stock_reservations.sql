-- Stock reservations for the checkout saga: one per (order, attempt), never two.
-- active -> committed (order placed: inventory decremented, exactly once)
-- active -> released (order failed, or expired); released -> committed (placed after expiry)
-- refused: the attempt could not be reserved (kept so that a redelivered request is answered
-- the same way instead of reserving).

CREATE TABLE stock_reservations (
    id              text PRIMARY KEY,
    order_id        text NOT NULL,
    attempt_id      uuid NOT NULL,
    basket_id       text NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'refused', 'committed', 'released')),
    errors          jsonb,
    release_reason  text CHECK (release_reason IN ('order-failed', 'expired', 'cancelled')),
    correlation_id  text,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    committed_at    timestamptz,
    released_at     timestamptz,
    version         integer NOT NULL DEFAULT 1,
    UNIQUE (order_id, attempt_id)
);
CREATE INDEX stock_reservations_expiring ON stock_reservations (expires_at) WHERE status = 'active';

CREATE TABLE stock_reservation_lines (
    reservation_id  text NOT NULL REFERENCES stock_reservations (id) ON DELETE CASCADE,
    variant_id      text NOT NULL REFERENCES variants (id),
    sku             text NOT NULL,
    quantity        integer NOT NULL CHECK (quantity >= 1),
    PRIMARY KEY (reservation_id, variant_id)
);
CREATE INDEX stock_reservation_lines_variant ON stock_reservation_lines (variant_id);
