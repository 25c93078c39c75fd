-- Monitoring samples: not events. One row per target and time bucket at
-- each resolution ("tier"): 0 raw (every sampling interval, 10 s by
-- default), 1 one minute, 2 ten minutes. Coarser tiers are averages (and
-- maxima for counters) of the finer ones; each tier is pruned after its
-- retention. kind is 'app' (the sum over an application's containers) or
-- 'server' (the host).
CREATE TABLE monitor_samples (
    kind             text             NOT NULL CHECK (kind IN ('app', 'server')),
    target           text             NOT NULL,
    tier             smallint         NOT NULL CHECK (tier IN (0, 1, 2)),
    at               timestamptz      NOT NULL,
    cpu_percent      double precision NOT NULL DEFAULT 0,
    mem_bytes        bigint           NOT NULL DEFAULT 0,
    mem_limit_bytes  bigint           NOT NULL DEFAULT 0,
    net_rx_bps       double precision NOT NULL DEFAULT 0,
    net_tx_bps       double precision NOT NULL DEFAULT 0,
    restarts         bigint           NOT NULL DEFAULT 0,
    containers       integer          NOT NULL DEFAULT 0,
    disk_used_bytes  bigint           NOT NULL DEFAULT 0,
    disk_total_bytes bigint           NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, target, tier, at)
);

CREATE INDEX monitor_samples_by_tier_time ON monitor_samples (tier, at);
