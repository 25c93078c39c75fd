-- State that must stay outside the immutable log: data keys (so that
-- destroying one shreds an application's secrets), password hashes (so they
-- can be replaced and erased), browser sessions and API-token hashes. The log
-- records only that these things happened.

-- One data key per application, wrapped (AES-256-GCM) by the master key.
-- Destroying a key clears wrapped and keeps the row, so the application's key
-- id is never reused.
CREATE TABLE data_keys (
    app          text        PRIMARY KEY,
    key_id       uuid        NOT NULL UNIQUE,
    master_id    bytea       NOT NULL,
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz
);

-- Password hashes (argon2id, PHC string with its salt and parameters).
CREATE TABLE credentials (
    user_id    text        PRIMARY KEY,
    hash       text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Browser sessions, by SHA-256 of the cookie's 256-bit id.
CREATE TABLE sessions (
    id_hash     bytea       PRIMARY KEY,
    user_id     text        NOT NULL,
    csrf        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_id);

-- API tokens, by SHA-256 of the secret.
CREATE TABLE api_tokens (
    id          text        PRIMARY KEY,
    hash        bytea       NOT NULL UNIQUE,
    name        text        NOT NULL,
    role        text        NOT NULL,
    created_by  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    last_used   timestamptz
);
