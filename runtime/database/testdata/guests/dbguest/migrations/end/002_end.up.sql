CREATE TABLE early (x integer);
END TRANSACTION;
CREATE TABLE late (x integer);
