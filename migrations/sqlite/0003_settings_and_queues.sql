-- Per-guild settings changed with /settings; NULL means "use the config default".
CREATE TABLE guild_settings (
    guild_id              INTEGER PRIMARY KEY NOT NULL,
    idle_timeout_ms       INTEGER,
    alone_timeout_ms      INTEGER,
    default_volume        INTEGER,
    max_queue             INTEGER,
    max_track_duration_ms INTEGER,
    dj_role               INTEGER,
    updated_at            INTEGER NOT NULL
);

-- Every guild's queue as last committed: restored after a restart.
CREATE TABLE saved_queues (
    guild_id      INTEGER PRIMARY KEY NOT NULL,
    voice_channel INTEGER NOT NULL,
    text_channel  INTEGER NOT NULL,
    loop_mode     TEXT    NOT NULL,
    paused        INTEGER NOT NULL,
    volume        INTEGER NOT NULL,
    position_ms   INTEGER NOT NULL, -- playback position of the first track when saved
    playing       INTEGER NOT NULL, -- was music playing (rejoin) or only queued
    saved_at      INTEGER NOT NULL
);

-- The tracks of a saved queue in order; ord 0 is the one that was playing.
CREATE TABLE saved_queue_tracks (
    guild_id     INTEGER NOT NULL REFERENCES saved_queues (guild_id) ON DELETE CASCADE,
    ord          INTEGER NOT NULL,
    track_json   TEXT    NOT NULL,
    requester_id INTEGER NOT NULL,
    requester    TEXT    NOT NULL,
    PRIMARY KEY (guild_id, ord)
);
