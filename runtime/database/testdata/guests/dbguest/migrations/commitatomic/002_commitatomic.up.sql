CREATE TABLE early (x integer);
SELECT begin, atomic FROM (SELECT 1 AS begin, 2 AS atomic) s;
COMMIT;
CREATE TABLE late (x integer);
