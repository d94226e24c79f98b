-- When an item was marked done, for the purge-done task (NULL: not done,
-- or done before this column existed: then updated_at stands in).
ALTER TABLE items ADD COLUMN done_at TIMESTAMP;

CREATE INDEX items_done_at ON items (done_at);
