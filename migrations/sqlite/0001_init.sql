-- Every track the bot started, per guild: feeds history and autocomplete.
CREATE TABLE play_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id     INTEGER NOT NULL,
    track_key    TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    page_url     TEXT    NOT NULL,
    requested_by INTEGER NOT NULL,
    played_at    INTEGER NOT NULL -- unix seconds
);
CREATE INDEX play_history_guild_time ON play_history (guild_id, played_at DESC);
