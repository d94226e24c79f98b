-- The server's statement timeout while a migration runs, in milliseconds.
CREATE TABLE settings AS SELECT setting::bigint AS ms FROM pg_settings WHERE name = 'statement_timeout';
