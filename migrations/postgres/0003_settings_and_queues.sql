-- PostgreSQL twin of migrations/sqlite/0003_settings_and_queues.sql.
CREATE TABLE guild_settings (
    guild_id              BIGINT  PRIMARY KEY NOT NULL,
    idle_timeout_ms       BIGINT,
    alone_timeout_ms      BIGINT,
    default_volume        BIGINT,
    max_queue             BIGINT,
    max_track_duration_ms BIGINT,
    dj_role               BIGINT,
    updated_at            BIGINT  NOT NULL
);

CREATE TABLE saved_queues (
    guild_id      BIGINT  PRIMARY KEY NOT NULL,
    voice_channel BIGINT  NOT NULL,
    text_channel  BIGINT  NOT NULL,
    loop_mode     TEXT    NOT NULL,
    paused        BOOLEAN NOT NULL,
    volume        BIGINT  NOT NULL,
    position_ms   BIGINT  NOT NULL,
    playing       BOOLEAN NOT NULL,
    saved_at      BIGINT  NOT NULL
);

CREATE TABLE saved_queue_tracks (
    guild_id     BIGINT  NOT NULL REFERENCES saved_queues (guild_id) ON DELETE CASCADE,
    ord          BIGINT  NOT NULL,
    track_json   TEXT    NOT NULL,
    requester_id BIGINT  NOT NULL,
    requester    TEXT    NOT NULL,
    PRIMARY KEY (guild_id, ord)
);
