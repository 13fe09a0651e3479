-- The cluster: nodes that share this database, the gateway shards they lease, and the
-- identify slots of Discord's max_concurrency buckets. PostgreSQL only: a SQLite store is
-- one process, which runs every shard itself.

-- One row per running node, refreshed with every lease renewal. A node whose heartbeat is
-- older than its lease is gone (its leases have expired too).
CREATE TABLE cluster_nodes (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_ms     BIGINT NOT NULL,
    -- What /resources shows for the node, as of its last heartbeat.
    shards       TEXT NOT NULL DEFAULT '',
    calls        BIGINT NOT NULL DEFAULT 0,
    rss_bytes    BIGINT NOT NULL DEFAULT 0,
    cpu_percent  DOUBLE PRECISION NOT NULL DEFAULT 0
);

-- One row per shard of the bot; the first node creates them, so the count is fixed for the
-- whole cluster. owner is NULL when the shard is free; a lease past expires_at is free too.
CREATE TABLE shard_leases (
    shard_id   INTEGER PRIMARY KEY,
    owner      TEXT,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Bumped on every change of owner: how often the shard moved.
    epoch      BIGINT NOT NULL DEFAULT 0
);

-- Discord allows one IDENTIFY per 5 s per bucket (shard_id % max_concurrency), for the bot
-- as a whole: a node claims the bucket's next slot here before its shard identifies.
CREATE TABLE identify_buckets (
    bucket  INTEGER PRIMARY KEY,
    next_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
