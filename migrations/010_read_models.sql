-- Read models maintained by the projections package. Every table is a pure
-- function of the event log: it can be dropped and rebuilt from position 0.
-- A rebuild creates "<table>_new" copies (CREATE TABLE ... (LIKE ...
-- INCLUDING ALL)), fills them and swaps them in by renaming, in one
-- transaction, so the column lists here are the only definition.

CREATE TABLE rm_projects (
    name        text        PRIMARY KEY,
    description text        NOT NULL,
    created_at  timestamptz NOT NULL,
    position    bigint      NOT NULL
);

CREATE TABLE rm_apps (
    name                  text        PRIMARY KEY,
    project               text        NOT NULL,
    status                text        NOT NULL,
    desired_status        text        NOT NULL,
    config                jsonb       NOT NULL,
    stream_version        bigint      NOT NULL,
    current_deployment_id text        NOT NULL,
    serving_deployment_id text        NOT NULL,
    serving_image         text        NOT NULL,
    serving_container     text        NOT NULL,
    upstream_host         text        NOT NULL,
    upstream_port         integer     NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    position              bigint      NOT NULL
);

CREATE INDEX rm_apps_project ON rm_apps (project, name);

CREATE TABLE rm_deployments (
    id               text        PRIMARY KEY,
    app              text        NOT NULL,
    status           text        NOT NULL,
    step             text        NOT NULL,
    trigger_kind     text        NOT NULL,
    trigger_detail   text        NOT NULL,
    actor_kind       text        NOT NULL,
    actor_id         text        NOT NULL,
    actor_name       text        NOT NULL,
    correlation_id   text        NOT NULL,
    app_version      bigint      NOT NULL,
    ref              text        NOT NULL,
    commit_sha       text        NOT NULL,
    image_id         text        NOT NULL,
    container_id     text        NOT NULL,
    container_name   text        NOT NULL,
    rollback_of      text        NOT NULL,
    retry_of         text        NOT NULL,
    worker           text        NOT NULL,
    attempts         integer     NOT NULL,
    cancel_requested boolean     NOT NULL,
    steps            jsonb       NOT NULL,
    requested_at     timestamptz NOT NULL,
    queued_at        timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_ms      bigint      NOT NULL,
    failed_step      text        NOT NULL,
    failure_reason   text        NOT NULL,
    queue_seq        bigint      NOT NULL,
    position         bigint      NOT NULL
);

CREATE INDEX rm_deployments_app ON rm_deployments (app, requested_at DESC, id);
CREATE INDEX rm_deployments_queue ON rm_deployments (queue_seq) WHERE status = 'queued';

CREATE TABLE rm_routes (
    host        text    PRIMARY KEY,
    app         text    NOT NULL,
    path_prefix text    NOT NULL,
    https       boolean NOT NULL,
    port        integer NOT NULL,
    position    bigint  NOT NULL
);

CREATE INDEX rm_routes_app ON rm_routes (app);

CREATE TABLE rm_audit (
    position       bigint      PRIMARY KEY,
    recorded_at    timestamptz NOT NULL,
    actor_kind     text        NOT NULL,
    actor_id       text        NOT NULL,
    actor_name     text        NOT NULL,
    action         text        NOT NULL,
    target         text        NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text        NOT NULL,
    command_id     text        NOT NULL,
    origin         text        NOT NULL,
    event_id       uuid        NOT NULL
);

CREATE INDEX rm_audit_target ON rm_audit (target, position);
CREATE INDEX rm_audit_actor ON rm_audit (actor_id, position);
CREATE INDEX rm_audit_action ON rm_audit (action, position);
CREATE INDEX rm_audit_correlation ON rm_audit (correlation_id, position);
