-- /settings panel: show the now-playing panel with buttons; NULL means "use the config
-- default" (player.panel).
ALTER TABLE guild_settings ADD COLUMN panel BOOLEAN;
