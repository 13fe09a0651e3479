-- PostgreSQL twin of migrations/sqlite/0008_lyrics_and_playlists.sql.
CREATE TABLE lyrics_cache (
    lookup     TEXT    PRIMARY KEY NOT NULL,
    body       TEXT,
    fetched_at BIGINT  NOT NULL
);

CREATE TABLE playlists (
    id         BIGSERIAL PRIMARY KEY,
    guild_id   BIGINT  NOT NULL,
    owner_id   BIGINT  NOT NULL,
    owner_name TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    name_key   TEXT    NOT NULL,
    shared     BOOLEAN NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    UNIQUE (guild_id, owner_id, name_key)
);
CREATE INDEX playlists_by_name ON playlists (guild_id, name_key);

CREATE TABLE playlist_tracks (
    playlist_id BIGINT  NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    ord         BIGINT  NOT NULL,
    track_json  TEXT    NOT NULL,
    PRIMARY KEY (playlist_id, ord)
);
