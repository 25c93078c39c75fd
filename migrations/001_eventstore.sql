-- The event log: one row per event, a gapless global position assigned under
-- the head row lock, optimistic concurrency in UNIQUE (stream_id,
-- stream_version), idempotency in UNIQUE (event_id), and a SHA-256 hash chain
-- (prev_hash, hash) computed by the application.
CREATE TABLE events (
    position       bigint      PRIMARY KEY CHECK (position > 0),
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL CHECK (stream_version > 0),
    event_id       uuid        NOT NULL UNIQUE,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    category       text        GENERATED ALWAYS AS (split_part(stream_id, '-', 1)) STORED,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_type_position ON events (type, position);
CREATE INDEX events_category_position ON events (category, position);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- The current version of every stream, read and written under the head lock.
CREATE TABLE streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL
);

-- The single head row: the last committed position and its hash. Appenders
-- lock it (SELECT ... FOR UPDATE), which serialises positions and the chain.
CREATE TABLE event_head (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    position bigint  NOT NULL,
    hash     bytea   NOT NULL
);

INSERT INTO event_head (id, position, hash) VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- The last processed position of named subscribers (projections, relay).
CREATE TABLE checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
