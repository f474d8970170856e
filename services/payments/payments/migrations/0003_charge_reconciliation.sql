-- Reconciliation of charge intents, and outages of the sandbox processor for the tests of it.

-- When the attempt's result was recorded (its transaction row, written in the same unit of work).
-- An intent still unsettled long after it was recorded is one whose process died or whose
-- provider stayed away: the sweeper asks the provider what became of it. The partial index keeps
-- that question about the few unsettled intents, however many attempts there have been.
ALTER TABLE charge_intents ADD COLUMN settled_at timestamptz;
UPDATE charge_intents AS i SET settled_at = t.created_at
FROM transactions AS t
WHERE t.kind = 'charge' AND t.attempt_id = i.attempt_id;
CREATE INDEX charge_intents_unsettled ON charge_intents (created_at) WHERE settled_at IS NULL;

-- Outages of the sandbox processor (its side of the world, like `sandbox_charges`). While a row
-- has calls `remaining`, each call of its `operation` the sandbox gets uses one and fails:
-- 'timeout' does not answer (the call hangs until the caller's provider timeout gives up on it),
-- 'error' answers 503 at once. Charges and lookups fail apart, as a processor's endpoints can, so
-- a test can keep charges failing while lookups answer. Tests insert the rows; the sandbox, and
-- with it this table, is refused in production.
CREATE TABLE sandbox_outages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation   text NOT NULL CHECK (operation IN ('charge', 'lookup')),
    failure     text NOT NULL CHECK (failure IN ('timeout', 'error')),
    remaining   integer NOT NULL CHECK (remaining >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
