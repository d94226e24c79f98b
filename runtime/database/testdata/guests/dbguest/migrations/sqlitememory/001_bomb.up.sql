-- Builds a 200 MB value (json_group_array checks db_max_result only once
-- it is done): past a small database.sqlite_memory, out of memory.
CREATE TABLE bomb AS
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 2000)
SELECT length(json_group_array(printf('%.*c', 100000, 'x'))) AS n FROM c;
