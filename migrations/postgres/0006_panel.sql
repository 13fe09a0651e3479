-- PostgreSQL twin of migrations/sqlite/0006_panel.sql.
ALTER TABLE guild_settings ADD COLUMN panel BOOLEAN;
