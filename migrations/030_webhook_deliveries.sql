-- Outbound webhook delivery state. Subscriptions themselves are events
-- (webhook-<id> streams); what lives here is operational: each
-- subscription's cursor (the last log position it has finished with,
-- delivered or given up) and one row per delivery attempt, for the API.
CREATE TABLE webhook_cursors (
    subscription_id text        PRIMARY KEY,
    position        bigint      NOT NULL CHECK (position >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per attempt. outcome: delivered (2xx), retrying (failed, another
-- attempt follows), failed (failed and given up: the cursor moved on).
CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    subscription_id text        NOT NULL,
    event_id        uuid        NOT NULL,
    position        bigint      NOT NULL,
    event_type      text        NOT NULL,
    attempt         integer     NOT NULL CHECK (attempt >= 1),
    outcome         text        NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    status_code     integer     NOT NULL DEFAULT 0,
    error           text        NOT NULL DEFAULT '',
    duration_ms     integer     NOT NULL DEFAULT 0,
    attempted_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, id DESC);
