-- The audio filters a guild had on (/filter), as JSON; NULL when none.
ALTER TABLE saved_queues ADD COLUMN filters_json TEXT;
