-- Refused by the statement filter, as it would be from a handler.
SET search_path TO public;
CREATE TEMP TABLE tt (x int);
