CREATE TABLE early (x integer);
COMMIT;
CREATE TABLE late (x integer);
