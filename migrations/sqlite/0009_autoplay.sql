-- /autoplay on|off: when the queue runs out, queue a related track. NULL means off (the
-- default).
ALTER TABLE guild_settings ADD COLUMN autoplay BOOLEAN;
