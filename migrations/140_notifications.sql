-- Notification delivery state. Channels themselves are events
-- (notification-<id> streams); what lives here is operational: each
-- channel's cursor (the last log position it has finished with, sent or
-- given up) and one row per send attempt, for the API and the UI.
CREATE TABLE notification_cursors (
    channel_id  text        PRIMARY KEY,
    position    bigint      NOT NULL CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per attempt. outcome: sent, retrying (failed, another attempt
-- follows), failed (failed and given up: the cursor moved on). A test
-- message from the API has position 0 and event_type 'test'.
CREATE TABLE notification_deliveries (
    id           bigserial   PRIMARY KEY,
    channel_id   text        NOT NULL,
    event_id     text        NOT NULL,
    position     bigint      NOT NULL CHECK (position >= 0),
    event_type   text        NOT NULL,
    rule         text        NOT NULL DEFAULT '',
    attempt      integer     NOT NULL CHECK (attempt >= 1),
    outcome      text        NOT NULL CHECK (outcome IN ('sent', 'retrying', 'failed')),
    error        text        NOT NULL DEFAULT '',
    duration_ms  integer     NOT NULL DEFAULT 0,
    attempted_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notification_deliveries_by_channel ON notification_deliveries (channel_id, id DESC);
