-- Payment types, the transaction ledger, charge intents and the sandbox processor's own records.

CREATE TABLE payment_types (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    handle          text NOT NULL UNIQUE,
    driver          text NOT NULL,
    success_status  text NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The two types every installation has; `python -m payments seed` inserts the same rows (by
-- handle) so that either way they exist exactly once. Ids: 122 random bits, lower-case hex.
INSERT INTO payment_types (id, name, handle, driver, success_status)
VALUES (replace(gen_random_uuid()::text, '-', ''), 'Card', 'card', 'sandbox', 'payment-received'),
       (replace(gen_random_uuid()::text, '-', ''), 'Offline', 'offline', 'offline', 'offline-payment')
ON CONFLICT (handle) DO NOTHING;

-- One row per checkout attempt, committed BEFORE the provider is called: the provider call is an
-- external side effect that cannot sit inside the handler's transaction, so the amount and type
-- an attempt charges are fixed here first and a redelivery re-runs with the same ones.
CREATE TABLE charge_intents (
    attempt_id       uuid PRIMARY KEY,
    order_id         text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         text NOT NULL,
    payment_type_id  text NOT NULL REFERENCES payment_types (id),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transactions (
    id               text PRIMARY KEY,
    order_id         text NOT NULL,
    attempt_id       uuid,
    kind             text NOT NULL CHECK (kind IN ('charge', 'refund', 'void')),
    amount           bigint NOT NULL CHECK (amount >= 0),
    currency         text NOT NULL,
    payment_type_id  text REFERENCES payment_types (id),
    provider         text NOT NULL,
    driver           text NOT NULL,
    transaction_id   text NOT NULL DEFAULT '',   -- the provider's reference
    merchant         text NOT NULL DEFAULT '',
    status           text NOT NULL,
    success          boolean NOT NULL,
    refund           boolean NOT NULL DEFAULT false,
    card_type        text,
    last_four        text,
    notes            text,
    message          text,                      -- the provider's reason for a decline
    parent_id        text REFERENCES transactions (id),
    refunded_total   bigint NOT NULL DEFAULT 0,
    version          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded_total >= 0 AND refunded_total <= amount),
    CHECK (kind = 'charge' OR parent_id IS NOT NULL)
);
-- One charge per attempt, and never two live captures for one order.
CREATE UNIQUE INDEX transactions_charge_per_attempt ON transactions (attempt_id) WHERE kind = 'charge';
CREATE UNIQUE INDEX transactions_one_capture_per_order ON transactions (order_id)
    WHERE kind = 'charge' AND status = 'captured';
CREATE INDEX transactions_order ON transactions (order_id, created_at);
CREATE INDEX transactions_parent ON transactions (parent_id) WHERE parent_id IS NOT NULL;

-- The sandbox processor's side of the world. A real processor keeps these records itself; the
-- sandbox keeps them here so that its idempotency keys behave like a real one's: a repeated
-- charge with the same key returns the first result and never captures twice. No token is kept.
CREATE TABLE sandbox_charges (
    idempotency_key  text PRIMARY KEY,
    reference        text NOT NULL UNIQUE,
    amount           bigint NOT NULL,
    currency         text NOT NULL,
    success          boolean NOT NULL,
    status           text NOT NULL,
    message          text,
    card_type        text,
    last_four        text,
    refunded         bigint NOT NULL DEFAULT 0,
    voided           boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded >= 0 AND refunded <= amount)
);

CREATE TABLE sandbox_refunds (
    idempotency_key   text PRIMARY KEY,
    reference         text NOT NULL UNIQUE,
    charge_reference  text NOT NULL REFERENCES sandbox_charges (reference),
    amount            bigint NOT NULL CHECK (amount > 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);
