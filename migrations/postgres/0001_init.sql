-- Every track the bot started, per guild: feeds history and autocomplete.
-- PostgreSQL twin of migrations/sqlite/0001_init.sql (same version, engine's own types).
CREATE TABLE play_history (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id     BIGINT  NOT NULL,
    track_key    TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    page_url     TEXT    NOT NULL,
    requested_by BIGINT  NOT NULL,
    played_at    BIGINT  NOT NULL -- unix seconds
);
CREATE INDEX play_history_guild_time ON play_history (guild_id, played_at DESC);
