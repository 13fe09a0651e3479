-- The metadata and audio caches (src/cache). Times are unix seconds; `lru` columns are a
-- per-table sequence bumped on every use (MAX(lru) + 1), so that least-recently-used
-- order is exact even for uses within the same second.

-- One resolved track per yt-dlp item (Track::cache_key = "{extractor}:{id}").
CREATE TABLE cache_tracks (
    key            TEXT    PRIMARY KEY NOT NULL,
    title          TEXT    NOT NULL,
    page_url       TEXT    NOT NULL,
    track_json     TEXT    NOT NULL, -- the serialised Track
    resolved_at    INTEGER NOT NULL, -- when yt-dlp last described it
    stream_expires INTEGER,          -- Track::stream_expires, when the stream URL has one
    last_used      INTEGER NOT NULL,
    lru            INTEGER NOT NULL
);
CREATE INDEX cache_tracks_lru ON cache_tracks (lru);

-- Normalised query text ("s:...") or URL ("u:...") → track key.
CREATE TABLE cache_aliases (
    alias      TEXT    PRIMARY KEY NOT NULL,
    key        TEXT    NOT NULL REFERENCES cache_tracks (key) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX cache_aliases_key ON cache_aliases (key);
CREATE INDEX cache_aliases_expiry ON cache_aliases (expires_at);

-- Finished audio files in the cache directory. Independent of cache_tracks: a file stays
-- usable after its metadata expired (the next resolution finds it by key again).
CREATE TABLE cache_audio (
    key         TEXT    PRIMARY KEY NOT NULL,
    file_name   TEXT    NOT NULL UNIQUE,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    last_access INTEGER NOT NULL,
    lru         INTEGER NOT NULL
);
CREATE INDEX cache_audio_lru ON cache_audio (lru);

-- Persistent counters: hits, misses, refreshes, downloads, ...
CREATE TABLE cache_counters (
    name  TEXT    PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
