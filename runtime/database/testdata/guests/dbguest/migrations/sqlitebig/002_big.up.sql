-- A value far past db_max_result (8 MiB by default): refused, as from a request.
CREATE TABLE big AS SELECT randomblob(20000000) AS b;
