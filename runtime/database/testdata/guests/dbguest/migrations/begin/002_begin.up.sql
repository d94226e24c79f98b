CREATE TABLE early (x integer);
BEGIN;
CREATE TABLE late (x integer);
