-- Never ends, and turns the server's statement timeout off first:
-- limits.migration_timeout must stop it all the same, on the server too.
SET LOCAL statement_timeout = 0;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c;
