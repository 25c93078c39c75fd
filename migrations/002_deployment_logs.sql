-- Build logs: large, noisy output kept out of the event log. One row per
-- line, numbered gaplessly from 1 per deployment; append-only (the trigger
-- below refuses UPDATE and DELETE). The end marker row records the line count
-- and the SHA-256 digest the deployment's final event carries, so the hash
-- chain covers the log.
CREATE TABLE deployment_logs (
    deployment_id text        NOT NULL,
    seq           bigint      NOT NULL CHECK (seq > 0),
    line          text        NOT NULL,
    stream        text        NOT NULL DEFAULT 'build',
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, seq)
);

-- The explicit end of a deployment's log: no line is appended after it.
CREATE TABLE deployment_log_ends (
    deployment_id text        PRIMARY KEY,
    lines         bigint      NOT NULL CHECK (lines >= 0),
    digest        text        NOT NULL,
    ended_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION deployment_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'deployment logs are append-only: % refused', TG_OP;
END;
$$;

CREATE TRIGGER deployment_logs_append_only
    BEFORE UPDATE OR DELETE ON deployment_logs
    FOR EACH ROW EXECUTE FUNCTION deployment_logs_append_only();

CREATE TRIGGER deployment_log_ends_append_only
    BEFORE UPDATE OR DELETE ON deployment_log_ends
    FOR EACH ROW EXECUTE FUNCTION deployment_logs_append_only();
