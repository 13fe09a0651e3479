-- The metadata and audio caches (src/cache). PostgreSQL twin of migrations/sqlite/0002_cache.sql.
-- Times are unix seconds; `lru` columns are a per-table sequence bumped on every use.
-- In a cluster the metadata tables and counters are shared by every node; the audio files
-- stay on each node's disk, so their index lives in that node's own SQLite file and this
-- cache_audio table stays empty (kept so both engines have one schema).

CREATE TABLE cache_tracks (
    key            TEXT    PRIMARY KEY NOT NULL,
    title          TEXT    NOT NULL,
    page_url       TEXT    NOT NULL,
    track_json     TEXT    NOT NULL,
    resolved_at    BIGINT  NOT NULL,
    stream_expires BIGINT,
    last_used      BIGINT  NOT NULL,
    lru            BIGINT  NOT NULL
);
CREATE INDEX cache_tracks_lru ON cache_tracks (lru);

CREATE TABLE cache_aliases (
    alias      TEXT    PRIMARY KEY NOT NULL,
    key        TEXT    NOT NULL REFERENCES cache_tracks (key) ON DELETE CASCADE,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX cache_aliases_key ON cache_aliases (key);
CREATE INDEX cache_aliases_expiry ON cache_aliases (expires_at);

CREATE TABLE cache_audio (
    key         TEXT    PRIMARY KEY NOT NULL,
    file_name   TEXT    NOT NULL UNIQUE,
    size        BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    last_access BIGINT  NOT NULL,
    lru         BIGINT  NOT NULL
);
CREATE INDEX cache_audio_lru ON cache_audio (lru);

CREATE TABLE cache_counters (
    name  TEXT    PRIMARY KEY NOT NULL,
    value BIGINT  NOT NULL
);
