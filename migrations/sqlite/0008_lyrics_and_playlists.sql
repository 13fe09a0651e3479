-- What LRCLIB answered for a lookup (artist, title and length, or a /lyrics query): the
-- record as JSON when found, NULL when it had nothing (kept briefly, see lyrics.miss_ttl).
CREATE TABLE lyrics_cache (
    lookup     TEXT    PRIMARY KEY NOT NULL,
    body       TEXT,
    fetched_at INTEGER NOT NULL
);

-- Playlists members saved with /playlist; a name is unique per member and server, in any case.
CREATE TABLE playlists (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id   INTEGER NOT NULL,
    owner_id   INTEGER NOT NULL,
    owner_name TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    name_key   TEXT    NOT NULL, -- the name in lower case
    shared     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (guild_id, owner_id, name_key)
);
CREATE INDEX playlists_by_name ON playlists (guild_id, name_key);

-- A playlist's tracks in order (the track as JSON, without its expiring stream URL).
CREATE TABLE playlist_tracks (
    playlist_id INTEGER NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    ord         INTEGER NOT NULL,
    track_json  TEXT    NOT NULL,
    PRIMARY KEY (playlist_id, ord)
);
