CREATE TABLE early (x integer);
ROLLBACK;
CREATE TABLE late (x integer);
