-- The error is on line 3; the statement before it is rolled back with it.
CREATE TABLE broken_before (x TEXT);
CREATE TABLE broken (x TEXT;
