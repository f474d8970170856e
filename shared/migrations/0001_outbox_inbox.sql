-- Platform tables every service has in its own schema.

-- Transactional outbox: rows are written in the same transaction as the state change they
-- announce, and published by the relay, which deletes them once the broker confirmed.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    routing_key     text NOT NULL,
    exchange        text NOT NULL DEFAULT 'events',
    mandatory       boolean NOT NULL DEFAULT true,
    body            bytea NOT NULL,
    headers         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id);

-- Inbox: one row per (consumer, event) handled; inserted in the handler's transaction.
CREATE TABLE inbox (
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    event_type  text NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Idempotency-Key records for POST requests.
CREATE TABLE idempotency_keys (
    key            text NOT NULL,
    scope          text NOT NULL,
    request_hash   text NOT NULL,
    status         integer,
    response_body  bytea,
    response_type  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
