-- Snapshots of the time-travel model (projections.Replay), taken every few
-- thousand positions so that the state as of a position is folded from the
-- nearest snapshot before it rather than from position 0. A snapshot is a
-- cache, never a source of truth: it records the hash of the event it was
-- folded up to and the format of the fold that made it, and is ignored
-- (and deleted) when either no longer matches. The model is gzip-compressed
-- by berth, so PostgreSQL stores it without compressing it again.
CREATE TABLE replay_snapshots (
    position   bigint PRIMARY KEY,
    hash       bytea NOT NULL,
    format     integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    model      bytea NOT NULL
);
ALTER TABLE replay_snapshots ALTER COLUMN model SET STORAGE EXTERNAL;
