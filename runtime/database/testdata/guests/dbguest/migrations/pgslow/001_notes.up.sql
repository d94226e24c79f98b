-- Slow enough for a test to restart the server while it runs.
CREATE TABLE notes (note TEXT NOT NULL);
SELECT pg_sleep(3);
