-- Customer accounts, their sign-in sessions and refresh tokens, the sign-in throttle and the
-- address books.

CREATE TABLE customers (
    id                   text PRIMARY KEY,
    email                text NOT NULL,               -- as given; unique whatever its case
    firstname            text NOT NULL,
    lastname             text NOT NULL,
    company_name         text,
    vat_no               text,
    contact_number       text,
    alt_contact_number   text,
    password_hash        text NOT NULL,               -- argon2id, PHC string: never the password
    password_changed_at  timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- One account per address however it is capitalised: `Ada@Example.com` is `ada@example.com`.
CREATE UNIQUE INDEX customers_email ON customers (lower(email));

-- A sign-in: the chain of refresh tokens it rotates through, until it is revoked.
CREATE TABLE sessions (
    id           text PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX sessions_customer ON sessions (customer_id) WHERE revoked_at IS NULL;

-- Refresh tokens by the SHA-256 of their value: reading this table yields no usable token.
CREATE TABLE refresh_tokens (
    token_hash   bytea PRIMARY KEY,
    session_id   text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz                           -- spent: exchanged for a new pair
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Failed password checks per email and per client address, kept here so that every replica
-- counts the same ones. The key is a digest: neither the email nor the address is kept in clear.
CREATE TABLE signin_failures (
    key_hash         bytea PRIMARY KEY,
    failures         integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure_at  timestamptz
);
CREATE INDEX signin_failures_last ON signin_failures (last_failure_at);

CREATE TABLE addresses (
    id                     text PRIMARY KEY,
    customer_id            text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    salutation             text,
    firstname              text NOT NULL,
    lastname               text NOT NULL,
    company_name           text,
    email                  text,
    phone                  text,
    address                text NOT NULL,
    address_two            text,
    address_three          text,
    city                   text NOT NULL,
    state                  text NOT NULL,
    postal_code            text NOT NULL,
    country                text NOT NULL,              -- ISO 3166 alpha-2
    shipping               boolean NOT NULL DEFAULT false,
    billing                boolean NOT NULL DEFAULT false,
    is_default             boolean NOT NULL DEFAULT false,
    delivery_instructions  text,
    meta                   jsonb NOT NULL DEFAULT '{}',
    last_used_at           timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX addresses_customer ON addresses (customer_id, created_at);
-- At most one default shipping and one default billing address per customer.
CREATE UNIQUE INDEX addresses_default_shipping ON addresses (customer_id) WHERE is_default AND shipping;
CREATE UNIQUE INDEX addresses_default_billing ON addresses (customer_id) WHERE is_default AND billing;
