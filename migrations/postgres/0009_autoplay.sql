-- PostgreSQL twin of migrations/sqlite/0009_autoplay.sql.
ALTER TABLE guild_settings ADD COLUMN autoplay BOOLEAN;
