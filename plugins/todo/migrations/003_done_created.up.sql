-- The listing with ?done=true or ?done=false: without this index it read
-- every item to find the first 100 of one kind in order (a load test's
-- 55 000 items, none done: a list past the plugin's 5 s timeout on a
-- loaded machine).
CREATE INDEX items_done_created ON items (done, created_at, id);
